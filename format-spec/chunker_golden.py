# A direct transcription of format-spec §3 (gear table) and §15 (cut routine and run rule)
# into Python, written from the spec, not from the Rust code. It prints the chunk lengths of
# the golden inputs of §15 (chunker::tests::golden_cut_points, golden_run_cuts,
# golden_large_file_cut_points and golden_cut_points_of_the_defaults):
#   pip install blake3; python3 format-spec/chunker_golden.py plain    # about 30 s
#   python3 format-spec/chunker_golden.py runs                         # about 1 min
#   python3 format-spec/chunker_golden.py large                        # about 10 s
#   python3 format-spec/chunker_golden.py defaults                     # about 30 s
import blake3, re, sys
M = (1 << 64) - 1
master = bytes([42]) * 32
seed = blake3.blake3(master, derive_key_context="projectclone 2026-11 v1 chunker gear table").digest()
xof = blake3.blake3(b"gear", key=seed).digest(length=2048)
GEAR = [int.from_bytes(xof[8*i:8*i+8], 'little') for i in range(256)]
GEAR_LS = [(g << 1) & M for g in GEAR]
which = sys.argv[1]
if which == 'large':  # the sizes of files of 64 MiB and more: MASKS[19] and MASKS[17]
    MIN, AVG, MAX = 128*1024, 256*1024, 2*1024*1024
    MASK_S, MASK_L = 0x0000d91707537000, 0x0000d90703537000
elif which == 'defaults':  # the outer sizes of new repositories: MASKS[20] and MASKS[18]
    MIN, AVG, MAX = 256*1024, 512*1024, 8*1024*1024
    MASK_S, MASK_L = 0x0000d91747537000, 0x0000d90707537000
else:  # the outer sizes of repositories made before 2026-12-07
    MIN, AVG, MAX = 512*1024, 1024*1024, 8*1024*1024
    MASK_S, MASK_L = 0x0000d91767537000, 0x0000d91707537000
MASK_S_LS, MASK_L_LS = (MASK_S << 1) & M, (MASK_L << 1) & M

def gear_cut(buf, off, end):
    ln = end - off
    if ln <= MIN: return ln
    remaining = min(ln, MAX)
    center = AVG if ln >= AVG else ln
    i = MIN // 2; h = 0
    while i < center // 2:
        a = 2*i
        h = ((h << 2) + GEAR_LS[buf[off+a]]) & M
        if h & MASK_S_LS == 0: return max(a, 1)
        h = (h + GEAR[buf[off+a+1]]) & M
        if h & MASK_S == 0: return max(a+1, 1)
        i += 1
    while i < remaining // 2:
        a = 2*i
        h = ((h << 2) + GEAR_LS[buf[off+a]]) & M
        if h & MASK_L_LS == 0: return max(a, 1)
        h = (h + GEAR[buf[off+a+1]]) & M
        if h & MASK_L == 0: return max(a+1, 1)
        i += 1
    return remaining

def xorshift(n, seed):
    x = seed; out = bytearray(n)
    for k in range(n):
        x ^= (x << 13) & M; x ^= x >> 7; x ^= (x << 17) & M
        out[k] = (x >> 24) & 0xff
    return bytes(out)

def chunk(data, R):
    # ends of maximal runs of length >= R that end before the end of the data
    ends = [m.end() for m in re.finditer(rb'(.)\1*', data, re.S) if m.end() - m.start() >= R and m.end() < len(data)] if R else []
    out = []; c = 0; k = 0
    while c < len(data):
        g = gear_cut(data, c, len(data))
        while k < len(ends) and ends[k] <= c: k += 1
        n = ends[k] - c if k < len(ends) and ends[k] < c + g else g
        out.append(n); c += n
    return out

if which in ('plain', 'defaults'):
    print(chunk(xorshift(24*1024*1024, 0x9E3779B97F4A7C15), 0))
elif which == 'large':
    print(chunk(xorshift(6*1024*1024, 0x9E3779B97F4A7C15), 65536))
else:
    d = bytes(4 << 20) + xorshift(3 << 20, 11) + b'\xff' * (100 << 10) + xorshift(5 << 20, 12) + bytes(40 << 10) + xorshift(2 << 20, 13) + bytes(20 << 20)
    print(chunk(d, 65536))
