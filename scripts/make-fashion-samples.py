#!/usr/bin/env python3
# Usage: scripts/make-fashion-samples.py resources/samples   (needs dataset-fashion-mnist)
# Writes Fashion-MNIST test images, upscaled to 128x128 (bilinear, pixel centres aligned), as PNG.
import gzip, struct, zlib, sys
root = '/usr/share/datasets/fashion-mnist'
names = ['T-shirt-top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot']
imgs = gzip.open(f'{root}/t10k-images-idx3-ubyte.gz').read()
labs = gzip.open(f'{root}/t10k-labels-idx1-ubyte.gz').read()
n, rows, cols = struct.unpack('>III', imgs[4:16])
labels = labs[8:]
def image(i):
    off = 16 + i * rows * cols
    return [imgs[off + r * cols: off + (r + 1) * cols] for r in range(rows)]
def upscale(img, size):
    out = []
    for y in range(size):
        sy = min(max((y + 0.5) * rows / size - 0.5, 0), rows - 1)
        y0 = int(sy); y1 = min(y0 + 1, rows - 1); fy = sy - y0
        line = bytearray()
        for x in range(size):
            sx = min(max((x + 0.5) * cols / size - 0.5, 0), cols - 1)
            x0 = int(sx); x1 = min(x0 + 1, cols - 1); fx = sx - x0
            v = (img[y0][x0] * (1 - fx) + img[y0][x1] * fx) * (1 - fy) + (img[y1][x0] * (1 - fx) + img[y1][x1] * fx) * fy
            line.append(int(v + 0.5))
        out.append(bytes(line))
    return out
def png(path, rowsdata, size):
    raw = b''.join(b'\x00' + r for r in rowsdata)
    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    data = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', size, size, 8, 0, 0, 0, 0)) + \
        chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b'')
    open(path, 'wb').write(data)
wanted = {c: 1 for c in range(10)}
wanted[6] = 2; wanted[0] = 2   # shirt and T-shirt/top are the hard pair: two of each
taken = {c: 0 for c in range(10)}
for i in range(n):
    c = labels[i]
    if taken[c] < wanted[c]:
        taken[c] += 1
        path = f'{sys.argv[1]}/fashion-{names[c]}-{i:05d}.png'
        png(path, upscale(image(i), 128), 128)
        print(path, 'test index', i, 'label', c)
    if taken == wanted:
        break
