// gemm.metal - C = alpha op(A) op(B) + beta C, row-major, batched over grid z.
// One threadgroup of 8 x 8 threads computes a 32 x 32 tile of C, 4 x 4
// outputs per thread, stepping k by 16 through two tiles in threadgroup
// memory.  Inputs are rounded to fp16 / bf16 precision when p.prec asks for
// it (fp32 accumulation).  beta == 0 never reads C (NaN-safe, as BLAS).
// Grid (ceil(n/32), ceil(m/32), batch).  On a Mac the host may send large
// fp32 products to MPSMatrixMultiplication instead; this kernel is the one
// the emulator runs.

kernel void ss_gemm(device const float *A [[buffer(0)]], device const float *B [[buffer(1)]],
                    device float *C [[buffer(2)]], constant ss_mtl_params &p [[buffer(3)]], SS_TARGS)
{
    threadgroup float As[16][33];   // [k][m]
    threadgroup float Bs[16][33];   // [k][n]
    uint lin = lid.y * 8u + lid.x;
    int m0 = int(tgp.y) * 32, n0 = int(tgp.x) * 32;
    device const float *a = A + long(tgp.z) * p.sa;
    device const float *b = B + long(tgp.z) * p.sb;
    device float *c = C + long(tgp.z) * p.sc;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < p.k; k0 += 16) {
        for (uint e = lin; e < 512u; e += 64u) {
            // consecutive threads read consecutive addresses of the stored matrix
            int kk = p.ta ? int(e / 32u) : int(e % 16u), mm = p.ta ? int(e % 32u) : int(e / 16u);
            int gm = m0 + mm, gk = k0 + kk;
            float v = 0.0f;
            if (gm < p.m && gk < p.k)
                v = p.ta ? a[long(gk) * p.lda + gm] : a[long(gm) * p.lda + gk];
            As[kk][mm] = ss_round_prec(v, p.prec);
            int kb = p.tb ? int(e % 16u) : int(e / 32u), nb = p.tb ? int(e / 16u) : int(e % 32u);
            int gn = n0 + nb, gkb = k0 + kb;
            float w = 0.0f;
            if (gn < p.nn && gkb < p.k)
                w = p.tb ? b[long(gn) * p.ldb + gkb] : b[long(gkb) * p.ldb + gn];
            Bs[kb][nb] = ss_round_prec(w, p.prec);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int kk = 0; kk < 16; kk++) {
            float av[4], bv[4];
            for (int i = 0; i < 4; i++) {
                av[i] = As[kk][int(lid.y) * 4 + i];
                bv[i] = Bs[kk][int(lid.x) * 4 + i];
            }
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    for (int i = 0; i < 4; i++) {
        int gm = m0 + int(lid.y) * 4 + i;
        if (gm >= p.m)
            continue;
        for (int j = 0; j < 4; j++) {
            int gn = n0 + int(lid.x) * 4 + j;
            if (gn >= p.nn)
                continue;
            long o = long(gm) * p.ldc + gn;
            float r = p.alpha * acc[i][j];
            if (p.beta != 0.0f)
                r += p.beta * c[o];
            c[o] = r;
        }
    }
}
