// Package compliance finds personal data and secrets in the files a tenant
// hands to TenSafe (datasets in JSONL, CSV or plain text), and in the logs and
// artifacts the service writes, so that an auditor can be shown where such
// data is and how much of it there is.
//
// The scanners are built for two constraints that pull against each other.
// They must be precise enough that a finding means something (a payment card
// must pass the Luhn check and carry a real issuer prefix, an IBAN must pass
// ISO 7064 mod-97 for its country's length, a phone number must be valid in
// libphonenumber's metadata, an SSN must not lie in a range the SSA never
// issues), and fast enough to run over whole datasets (one pass per line,
// with validation only on candidates). And a report must never become a new
// copy of the data it warns about: a [Finding] carries a type and a location
// (file, line, column) and nothing of the matched bytes, and no error this
// package returns quotes scanned content.
//
// The wire form of a [Report] is documented in docs/compliance/SCANNERS.md
// (format "tensafe.compliance.scan/v1").
//
// On top of the scanners the package turns measurements into audit
// evidence. [Scanner.Minimize] applies a [Policy] (allow, redact or drop an
// example, per kind of finding) to a JSONL dataset and writes a
// [MinimizationReport] of counts and hashes. [Controls] is the control
// matrix as data — each control names the metric it reads and the ISO/IEC
// 27701, ISO/IEC 27001:2022 Annex A and SOC 2 clauses it supports, and
// carries the check that computes its status (Evidence Present, Partial,
// Gap) from a deployment's measured metrics (api.ComplianceMetrics), its
// compliance events, the scans and the minimization reports; nothing is a
// status written by hand. [BuildPack] evaluates them and [Pack.Write] writes
// the evidence pack. docs/compliance/CONTROL_MATRIX.md is generated from
// [Controls] and docs/compliance/EVIDENCE.md fixes the formats.
package compliance
