// Package privacy is TenSafe's privacy accountant: it answers "what (ε, δ)
// has this DP-SGD run spent?" before and after every optimizer step, picks
// the noise a target budget needs, and issues the DP certificate that leaves
// the service with a trained adapter.
//
// A privacy claim is only as good as its accountant, so every number here is
// exact code checked against published values rather than an approximation
// of them:
//
//   - The RDP accountant computes the Rényi DP of the Poisson-subsampled
//     Gaussian mechanism (Mironov, Talwar, Zhang 2019) at integer and
//     fractional orders in log space, the way TensorFlow Privacy, Opacus and
//     Google's dp_accounting do, and converts it to (ε, δ) with the improved
//     conversion of Balle et al. 2020 (Theorem 21) or, on request, the classic
//     one.
//   - The PRV accountant (Gopi, Lee, Wutschitz 2021, Opacus's default)
//     discretises the privacy loss random variable of each step, composes the
//     steps with an FFT and reports ε together with its error bounds.
//
// The training service holds a [Budget]: [Budget.CanStep] says, before a
// step, whether it would keep ε within the target; [Budget.RecordStep]
// records it afterwards in O(1) amortized time (run-length history); the
// budget's state round-trips exactly through MarshalBinary/UnmarshalBinary
// so it can travel in checkpoints. [NewCertificate] turns a finished budget
// into a [Certificate] whose canonical JSON can be signed.
//
// The formats are specified in docs/DP_CERTIFICATE.md and the mathematics,
// tolerances and reference values in docs/PRIVACY_ACCOUNTING.md.
package privacy
