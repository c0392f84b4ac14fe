// attention.h: causal GQA attention over the KV cache with the sigmoid
// output gate, one threadgroup per (query head, token).
//
// Each warp walks chunks of ATT_CHUNK positions (chunk warp, warp+nw,
// ...) with an online softmax, holding its share of the output (lane i
// owns dims i, i+32, ...), then the warps' partial (max, sum, acc) are
// merged through shared memory. A chunk's keys are loaded together, then
// its values: position by position each step waited out two memory
// latencies (keys, then values) in turn, which made a decode step's
// attention grow by ~1 µs a position a warp (docs/gpu-decode.md, session 11).
// Head dim ≤ 32·ATT_MAXI, at most ATT_MAXW warps.

#define ATT_MAXI 8
#define ATT_MAXW 16
#define ATT_CHUNK 4

KERNEL(attention)(PARAM_PTR(float, out, 0), PARAM_PTR(const float, q, 1), PARAM_PTR(const float, gate, 2),
                  PARAM_PTR(const float, k, 3), PARAM_PTR(const float, v, 4), PARAM(int, H, 5), PARAM(int, D, 6),
                  PARAM(int, kvH, 7), PARAM(int, pos0, 8), PARAM(int, qRow, 9), PARAM(int, qHead, 10),
                  PARAM(int, qOff, 11), PARAM(int, gRow, 12), PARAM(int, gHead, 13), PARAM(int, gOff, 14),
                  PARAM(int, hasGate, 15), PARAM(float, scale, 16) KERNEL_IDS) {
    GRID_WAIT();
    SHARED(float, sm, ATT_MAXW);
    SHARED(float, sl, ATT_MAXW);
    SHARED(float, sacc, ATT_MAXW * 32 * ATT_MAXI);
    int h = BLOCK_ID_X, t = BLOCK_ID_Y, tid = THREAD_ID_X;
    int lane = tid & 31, warp = tid >> 5, nw = BLOCK_DIM_X >> 5;
    int kh = h / (H / kvH);
    i64 qo = (i64)qOff + (i64)t * qRow + (i64)h * qHead;
    float qr[ATT_MAXI];
    float acc[ATT_MAXI];
    UNROLL for (int i = 0; i < ATT_MAXI; i++) {
        int d = lane + 32 * i;
        qr[i] = d < D ? q[qo + d] * scale : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY_F, l = 0.0f;
    int last = pos0 + t;
    i64 kvw = (i64)kvH * D;
    for (int p0 = warp * ATT_CHUNK; p0 <= last; p0 += nw * ATT_CHUNK) {
        float s[ATT_CHUNK];
        i64 row[ATT_CHUNK]; // position p0 + j's key and value offset (past last: last's, weight 0)
        UNROLL for (int j = 0; j < ATT_CHUNK; j++) {
            row[j] = (i64)(p0 + j <= last ? p0 + j : last) * kvw + (i64)kh * D;
        }
        UNROLL for (int j = 0; j < ATT_CHUNK; j++) {
            i64 base = row[j];
            s[j] = 0.0f;
            UNROLL for (int i = 0; i < ATT_MAXI; i++) {
                int d = lane + 32 * i;
                if (d < D) s[j] = FMAF(qr[i], k[base + d], s[j]);
            }
        }
        float mn = m;
        UNROLL for (int j = 0; j < ATT_CHUNK; j++) {
            s[j] = SIMD_SUM(s[j]);
            if (p0 + j <= last) mn = FMAXF(mn, s[j]);
        }
        float corr = EXPF(m - mn);
        float pw[ATT_CHUNK];
        l *= corr;
        UNROLL for (int j = 0; j < ATT_CHUNK; j++) {
            pw[j] = p0 + j <= last ? EXPF(s[j] - mn) : 0.0f;
            l += pw[j];
        }
        UNROLL for (int i = 0; i < ATT_MAXI; i++) {
            int d = lane + 32 * i;
            if (d < D) {
                float a = acc[i] * corr;
                UNROLL for (int j = 0; j < ATT_CHUNK; j++) {
                    a = FMAF(pw[j], v[row[j] + d], a);
                }
                acc[i] = a;
            }
        }
        m = mn;
    }
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
    UNROLL for (int i = 0; i < ATT_MAXI; i++) {
        int d = lane + 32 * i;
        if (d < D) sacc[warp * D + d] = acc[i];
    }
    BARRIER();
    float M = -INFINITY_F;
    for (int w = 0; w < nw; w++) M = FMAXF(M, sm[w]);
    float L = 0.0f;
    for (int w = 0; w < nw; w++) L += sl[w] * EXPF(sm[w] - M);
    i64 go = (i64)gOff + (i64)t * gRow + (i64)h * gHead;
    for (int d = tid; d < D; d += BLOCK_DIM_X) {
        float a = 0.0f;
        for (int w = 0; w < nw; w++) a += sacc[w * D + d] * EXPF(sm[w] - M);
        float o = a / L;
        if (hasGate) o *= sigmoid_(gate[go + d]);
        out[((i64)t * H + h) * D + d] = o;
    }
}
