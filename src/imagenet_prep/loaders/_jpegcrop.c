/* Decode only a rectangle of a JPEG, with libjpeg-turbo (the libjpeg API).
 *
 * A training crop keeps about half of an image's pixels. libjpeg-turbo skips the rows above
 * the crop without the IDCT, upsampling or colour conversion (jpeg_skip_scanlines), works
 * only on the iMCU columns that hold it (jpeg_crop_scanline) and never reads the rows below
 * it: a RandomResizedCrop costs about 3/4 of a whole decode (bench/loaders.py). No
 * installable Python package offers this, hence this small module.
 *
 *   size(data) -> (height, width)
 *   decode(data, top, left, height, width) -> (pixels, x, w)
 *
 * ``decode`` returns the rows top..top+height of the columns x..x+w, RGB, 3 bytes a pixel,
 * as bytes, x <= left and x + w >= left + width (libjpeg widens the columns to whole iMCUs,
 * and a margin keeps the crop's pixels equal to a whole decode's). Anything libjpeg warns about or refuses (CMYK, a damaged stream)
 * raises ValueError, and the caller decodes the image another way.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

#define MARGIN 2

struct error_state {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo)
{
    struct error_state *err = (struct error_state *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo)
{
    (void)cinfo; /* warnings are counted (num_warnings), never printed */
}

static void setup(struct jpeg_decompress_struct *d, struct error_state *err)
{
    d->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = on_error;
    err->pub.output_message = on_message;
    err->message[0] = '\0';
}

static PyObject *jpeg_size(PyObject *self, PyObject *args)
{
    Py_buffer data;
    struct jpeg_decompress_struct d;
    struct error_state err;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    setup(&d, &err);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&d);
        PyBuffer_Release(&data);
        PyErr_Format(PyExc_ValueError, "JPEG header: %s", err.message);
        return NULL;
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, (const unsigned char *)data.buf, (unsigned long)data.len);
    jpeg_read_header(&d, TRUE);
    long height = d.image_height, width = d.image_width;
    jpeg_destroy_decompress(&d);
    PyBuffer_Release(&data);
    return Py_BuildValue("(ll)", height, width);
}

static PyObject *jpeg_decode(PyObject *self, PyObject *args)
{
    Py_buffer data;
    int top, left, height, width;
    struct jpeg_decompress_struct d;
    struct error_state err;
    PyObject *volatile pixels = NULL;
    PyThreadState *volatile released = NULL; /* set while the GIL is released */
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iiii", &data, &top, &left, &height, &width))
        return NULL;
    setup(&d, &err);
    if (setjmp(err.jump)) {
        if (released != NULL)
            PyEval_RestoreThread(released);
        jpeg_destroy_decompress(&d);
        PyBuffer_Release(&data);
        Py_XDECREF(pixels);
        PyErr_Format(PyExc_ValueError, "JPEG data: %s", err.message);
        return NULL;
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, (const unsigned char *)data.buf, (unsigned long)data.len);
    jpeg_read_header(&d, TRUE);
    if (top < 0 || left < 0 || height < 1 || width < 1 || (unsigned)(top + height) > d.image_height
        || (unsigned)(left + width) > d.image_width) {
        jpeg_destroy_decompress(&d);
        PyBuffer_Release(&data);
        PyErr_Format(PyExc_ValueError, "crop %d,%d %dx%d outside the %ux%u image", top, left,
                     height, width, d.image_height, d.image_width);
        return NULL;
    }
    d.out_color_space = JCS_RGB;
    jpeg_start_decompress(&d);
    if (d.output_components != 3) {
        jpeg_destroy_decompress(&d);
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "JPEG data: not decoded to 3 components");
        return NULL;
    }
    /* Two more columns each side when the image has them: fancy upsampling treats the
     * decoded region's edges as the image's, so its outermost columns could differ from
     * a whole decode; these are never handed out. */
    int first = left > MARGIN ? left - MARGIN : 0;
    int end = left + width + MARGIN < (int)d.image_width ? left + width + MARGIN
                                                           : (int)d.image_width;
    JDIMENSION x = (JDIMENSION)first, w = (JDIMENSION)(end - first);
    jpeg_crop_scanline(&d, &x, &w);
    pixels = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)height * w * 3);
    if (pixels == NULL) {
        jpeg_destroy_decompress(&d);
        PyBuffer_Release(&data);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(pixels);
    released = PyEval_SaveThread();
    if (top > 0)
        jpeg_skip_scanlines(&d, (JDIMENSION)top);
    while (d.output_scanline < (JDIMENSION)(top + height)) {
        JSAMPROW row = out + (size_t)(d.output_scanline - top) * w * 3;
        if (jpeg_read_scanlines(&d, &row, 1) != 1)
            break;
    }
    int rows = (int)d.output_scanline - top;
    long warnings = d.err->num_warnings;
    jpeg_abort_decompress(&d); /* the rows below the crop are never decoded */
    PyEval_RestoreThread(released);
    released = NULL;
    jpeg_destroy_decompress(&d);
    PyBuffer_Release(&data);
    if (rows != height || warnings) {
        Py_DECREF(pixels);
        PyErr_Format(PyExc_ValueError, "JPEG data: %s",
                     warnings ? "corrupt or truncated (libjpeg warned)" : "ends early");
        return NULL;
    }
    return Py_BuildValue("(NII)", pixels, x, w);
}

static PyMethodDef methods[] = {
    {"size", jpeg_size, METH_VARARGS, "size(data) -> (height, width) from the JPEG header."},
    {"decode", jpeg_decode, METH_VARARGS,
     "decode(data, top, left, height, width) -> (pixels, x, w): the RGB rows of the crop, "
     "columns x..x+w (whole iMCUs around left..left+width)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegcrop", "Decode only a rectangle of a JPEG with libjpeg-turbo.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jpegcrop(void) { return PyModule_Create(&module); }
