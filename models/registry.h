/* registry.h - the architectures compiled in: one line each, SS_ARCH(name) for
 * the ss_arch_<name> that models/<name>/ defines (src/model.c includes this
 * list twice: once to declare them, once to build the table).  Order is the
 * order `stemsplit --help` and error messages list them in.
 * Adding an architecture: docs/adding-a-model.md. */
SS_ARCH(htdemucs)
SS_ARCH(bs_roformer)
SS_ARCH(mel_band_roformer)
SS_ARCH(mdx23c)
SS_ARCH(larsnet)
SS_ARCH(deepfilternet3)
SS_ARCH(bandsplit)
SS_ARCH(identity)
