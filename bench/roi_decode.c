/* Decoding only the crop: how much of a full JPEG decode a RandomResizedCrop needs.
 *
 * For issue 6 (loaders). libjpeg-turbo can skip the rows above a crop (entropy decoding
 * only, no IDCT, upsampling or colour conversion: jpeg_skip_scanlines), decode only the
 * iMCU columns that hold it (jpeg_crop_scanline) and stop after its last row
 * (jpeg_abort_decompress). No Python wheel on this machine exposes that, so this measures
 * it in C against the system libjpeg-turbo (Debian's libjpeg62-turbo-dev):
 *
 *     gcc -O2 -o /tmp/roi_decode bench/roi_decode.c -ljpeg -lm
 *     find bench/out/extracted-100x200x10/train -type f | head -1000 | xargs /tmp/roi_decode
 *
 * (the extracted tree is the one bench/run.py makes for its baseline). Each of 3 rounds
 * decodes every file whole, then again with a crop drawn as torchvision's RandomResizedCrop
 * draws its first try (scale 0.08-1, ratio 3/4-4/3, uniform position; clamped to the
 * image), and prints the time
 * per image of both, the share of pixels the crops kept, and how many files libjpeg
 * refused (the fixture's PNGs named .JPEG; CMYK, which it cannot turn into RGB).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <setjmp.h>
#include <jpeglib.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

struct err {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
};

static void on_error(j_common_ptr c) { longjmp(((struct err *)c->err)->jb, 1); }

static unsigned char *out;

/* Decode buf: the whole image (crop 0), or a RandomResizedCrop drawn from r[0..3] in [0, 1]
 * (area 0.08-1 of the image, log-uniform ratio 3/4-4/3, clamped to the image, uniform
 * position). Adds the pixels decoded into the output to *pixels; -1 when libjpeg refuses. */
static int decode(unsigned char *buf, long n, int crop, const double *r, long *pixels) {
  struct jpeg_decompress_struct d;
  struct err e;
  d.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = on_error;
  if (setjmp(e.jb)) {
    jpeg_destroy_decompress(&d);
    return -1;
  }
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, buf, n);
  jpeg_read_header(&d, TRUE);
  d.out_color_space = JCS_RGB;
  jpeg_start_decompress(&d);
  int W = d.output_width, H = d.output_height;
  if (!crop) {
    while (d.output_scanline < d.output_height) {
      JSAMPROW row = out + (size_t)d.output_scanline * W * 3;
      jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_finish_decompress(&d);
    *pixels += (long)W * H;
  } else {
    double area = (double)W * H * (0.08 + r[0] * 0.92);
    double ratio = exp(log(0.75) + r[1] * (log(4.0 / 3) - log(0.75)));
    int w = (int)lround(sqrt(area * ratio)), h = (int)lround(sqrt(area / ratio));
    if (w > W)
      w = W;
    if (h > H)
      h = H;
    int top = (int)(r[2] * (H - h + 1)), left = (int)(r[3] * (W - w + 1));
    if (top > H - h)
      top = H - h;
    if (left > W - w)
      left = W - w;
    JDIMENSION x = left, cw = w; /* widened to whole iMCU columns by libjpeg */
    jpeg_crop_scanline(&d, &x, &cw);
    if (top)
      jpeg_skip_scanlines(&d, top);
    while (d.output_scanline < (JDIMENSION)(top + h)) {
      JSAMPROW row = out + (size_t)(d.output_scanline - top) * cw * 3;
      jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_abort_decompress(&d); /* the rows below the crop are never decoded */
    *pixels += (long)cw * h;
  }
  jpeg_destroy_decompress(&d);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s JPEG...\n", argv[0]);
    return 2;
  }
  int n = argc - 1;
  unsigned char **bufs = malloc(n * sizeof *bufs);
  long *lens = malloc(n * sizeof *lens);
  out = malloc(8000 * 8000 * 3);
  for (int i = 0; i < n; i++) {
    FILE *f = fopen(argv[i + 1], "rb");
    if (!f) {
      perror(argv[i + 1]);
      return 1;
    }
    fseek(f, 0, SEEK_END);
    lens[i] = ftell(f);
    fseek(f, 0, SEEK_SET);
    bufs[i] = malloc(lens[i]);
    if (fread(bufs[i], 1, lens[i], f) != (size_t)lens[i]) {
      perror(argv[i + 1]);
      return 1;
    }
    fclose(f);
  }
  srand(1);
  for (int round = 0; round < 3; round++) {
    long whole_px = 0, crop_px = 0;
    int bad = 0;
    double t = now();
    for (int i = 0; i < n; i++)
      bad += decode(bufs[i], lens[i], 0, NULL, &whole_px) != 0;
    double whole = now() - t;
    t = now();
    for (int i = 0; i < n; i++) {
      double r[4];
      for (int k = 0; k < 4; k++)
        r[k] = rand() / (double)RAND_MAX;
      bad += decode(bufs[i], lens[i], 1, r, &crop_px) != 0;
    }
    double crop = now() - t;
    printf("whole %.0f us/img, crop only %.0f us/img (%.0f%% of whole), pixels kept %.0f%%, "
           "refused %d\n", whole / n * 1e6, crop / n * 1e6, 100 * crop / whole,
           100.0 * crop_px / whole_px, bad);
  }
  return 0;
}
