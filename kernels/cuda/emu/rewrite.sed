# rewrite.sed - the two CUDA constructs that are not C++ at all, rewritten for
# the CUDA emulator (sed -E; one line in, one line out, so line numbers hold):
#   extern __shared__ T name[];        ->  T *name = (T *)emu::dyn_smem();
#   kern<<<grid, block[, smem[, s]]>>>(  ->  emu::chevron(SS_EMU_NAME(kern), kern, grid, block...)(
s/extern[[:space:]]+__shared__[[:space:]]+([A-Za-z_][A-Za-z0-9_]*)[[:space:]]+([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\[[[:space:]]*\][[:space:]]*;/\1 *\2 = (\1 *)emu::dyn_smem();/
s/([A-Za-z_][A-Za-z0-9_]*(<[^<>;()]*>)?)[[:space:]]*<<<(.*)>>>[[:space:]]*\(/emu::chevron(SS_EMU_NAME(\1), \1, \3)(/
