package compliance

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// Options configure a [Scanner]. The zero value scans for both personal data
// and secrets with the defaults below.
type Options struct {
	SkipPII     bool
	SkipSecrets bool
	// PhoneRegion is the ISO 3166-1 region assumed for phone numbers written
	// without a +country code. Default "US".
	PhoneRegion string
	// MinEntropy is the Shannon entropy, in bits per byte, above which a
	// run of 32 or more base64 characters with letters and digits is reported
	// as a high-entropy string. Default 4.3 (above hex's maximum of 4).
	MinEntropy float64
	// MaxLine is the longest line held in memory; a longer line is scanned
	// in pieces of this size (a match straddling a cut can be missed).
	// Default 1 MiB.
	MaxLine int
	// Workers is how many files are scanned at once. Default GOMAXPROCS.
	Workers int
	// MaxFindings caps how many findings a report lists (the counts stay
	// exact); 0 lists all. A dataset with millions of e-mail addresses
	// needs the counts, not millions of locations.
	MaxFindings int
	// Now fixes the current time (the latest plausible year of birth).
	Now time.Time
}

// Scanner finds personal data and secrets. It is safe for concurrent use.
type Scanner struct {
	pii         *piiScanner
	sec         *secretScanner
	maxLine     int
	workers     int
	maxFindings int
}

// NewScanner checks opts and returns a scanner.
func NewScanner(opts Options) (*Scanner, error) {
	if opts.PhoneRegion == "" {
		opts.PhoneRegion = "US"
	}
	if !phonenumbers.GetSupportedRegions()[opts.PhoneRegion] {
		return nil, fmt.Errorf("%w: PhoneRegion %q is not a region libphonenumber knows", ErrBadOption, opts.PhoneRegion)
	}
	if opts.MinEntropy == 0 {
		opts.MinEntropy = 4.3
	}
	if opts.MinEntropy < 0 || opts.MinEntropy > 8 {
		return nil, fmt.Errorf("%w: MinEntropy %v is outside 0..8 bits per byte", ErrBadOption, opts.MinEntropy)
	}
	if opts.MaxLine == 0 {
		opts.MaxLine = 1 << 20
	}
	if opts.MaxLine < 4096 {
		return nil, fmt.Errorf("%w: MaxLine %d is below 4096 bytes", ErrBadOption, opts.MaxLine)
	}
	if opts.Workers == 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("%w: Workers %d is negative", ErrBadOption, opts.Workers)
	}
	if opts.MaxFindings < 0 {
		return nil, fmt.Errorf("%w: MaxFindings %d is negative", ErrBadOption, opts.MaxFindings)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	s := &Scanner{maxLine: opts.MaxLine, workers: opts.Workers, maxFindings: opts.MaxFindings}
	if !opts.SkipPII {
		s.pii = &piiScanner{
			region:  opts.PhoneRegion,
			nanp:    phonenumbers.GetCountryCodeForRegion(opts.PhoneRegion) == 1,
			maxYear: opts.Now.Year(),
		}
	}
	if !opts.SkipSecrets {
		s.sec = &secretScanner{minEntropy: opts.MinEntropy}
	}
	return s, nil
}

// fileState is what a scan carries from one line of a file to the next.
type fileState struct {
	key     keyState
	dotenv  bool
	csv     bool
	csvSep  byte
	dobCols map[int]bool
	line    int
}

func newFileState(name string) *fileState {
	base := filepath.Base(name)
	st := &fileState{dotenv: dotenvName(base)}
	switch strings.ToLower(filepath.Ext(base)) {
	case ".csv":
		st.csv, st.csvSep = true, ','
	case ".tsv":
		st.csv, st.csvSep = true, '\t'
	}
	return st
}

// Scan reads r (the contents of the file called name, which only labels the
// findings and selects .env and CSV handling) and returns its findings, in
// line and column order, and the number of bytes read. It stops with ctx's
// error when ctx ends. Use it for artifacts decrypted in memory: nothing is
// written anywhere.
func (s *Scanner) Scan(ctx context.Context, name string, r io.Reader) ([]Finding, int64, error) {
	return s.scan(ctx, name, newFileState(name), r)
}

func (s *Scanner) scan(ctx context.Context, name string, st *fileState, r io.Reader) ([]Finding, int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		out   []Finding
		n     int64
		long  []byte
		ms    []match
		col0  int // column offset of a piece of a long line
		pend  bool
		lines int
	)
	emit := func(line []byte) {
		ms = s.scanLine(line, st, ms[:0])
		for _, m := range ms {
			out = append(out, Finding{Kind: m.kind, File: name, Line: st.line, Column: col0 + m.start + 1})
		}
	}
	for {
		chunk, err := br.ReadSlice('\n')
		n += int64(len(chunk))
		if len(chunk) > 0 {
			if !pend {
				st.line++
				col0 = 0
			}
			full := err == nil
			if !full && err == bufio.ErrBufferFull || long != nil {
				long = append(long, chunk...)
				if !full && err == bufio.ErrBufferFull {
					pend = true
					if len(long) >= s.maxLine {
						emit(long)
						col0 += len(long)
						long = long[:0]
					}
					continue
				}
				chunk, long = long, nil
			}
			pend = false
			emit(bytes.TrimRight(chunk, "\r\n"))
			lines++
			if lines&1023 == 0 {
				if err := ctx.Err(); err != nil {
					return nil, n, err
				}
			}
		}
		if err == io.EOF {
			if len(long) > 0 {
				emit(long)
			}
			sortFindings(out)
			return out, n, ctx.Err()
		}
		if err != nil && err != bufio.ErrBufferFull {
			return nil, n, fmt.Errorf("compliance: read %s: %w", name, err)
		}
	}
}

// ScanBytes scans data in memory (for example a decrypted artifact).
func (s *Scanner) ScanBytes(ctx context.Context, name string, data []byte) ([]Finding, error) {
	f, _, err := s.Scan(ctx, name, bytes.NewReader(data))
	return f, err
}

func (s *Scanner) scanLine(line []byte, st *fileState, ms []match) []match {
	if st.csv && st.line == 1 {
		st.dobCols = csvDOBColumns(line, st.csvSep)
	}
	if s.sec != nil {
		before := len(ms)
		ms = s.sec.scanLine(line, &st.key, ms)
		if st.dotenv {
			// in a .env file a secret-named key is reported as such; a
			// provider token keeps its own kind
			kept := ms[:before]
			for _, m := range ms[before:] {
				if m.kind != KindGenericSecret {
					kept = append(kept, m)
				}
			}
			ms = kept
			if len(ms) == before {
				ms = scanDotenvLine(line, ms)
			}
		}
	}
	if s.pii != nil && !st.key.inKey {
		first := len(ms)
		if len(st.dobCols) > 0 && st.line > 1 {
			ms = s.pii.csvDOB(line, st.csvSep, st.dobCols, ms)
		}
		ms = scanEmails(line, ms)
		ms = scanIPv6(line, ms)
		ms = s.pii.scanDigits(line, ms, 0)
		ms = dropCovered(ms, first)
	}
	return ms
}

// dropCovered removes e-mail and IPv6 matches (ms[first:]) that lie inside a
// secret found earlier on the line, such as a URL with credentials.
func dropCovered(ms []match, first int) []match {
	if first == 0 {
		return ms
	}
	taken := newClaimed(ms[:first])
	out := ms[:first]
	for _, m := range ms[first:] {
		if !taken.has(m.start) {
			out = append(out, m)
		}
	}
	return out
}

// csvFields returns the start offset of each field of a CSV line.
func csvFields(line []byte, sep byte) []int {
	starts := []int{0}
	q := false
	for i, c := range line {
		switch {
		case c == '"':
			q = !q
		case c == sep && !q:
			starts = append(starts, i+1)
		}
	}
	return starts
}

func csvDOBColumns(header []byte, sep byte) map[int]bool {
	var cols map[int]bool
	starts := csvFields(header, sep)
	for k, s := range starts {
		e := len(header)
		if k+1 < len(starts) {
			e = starts[k+1] - 1
		}
		name := strings.ToLower(strings.Trim(string(header[s:e]), "\" \t"))
		if strings.Contains(name, "birth") || name == "dob" || strings.HasPrefix(name, "dob_") || strings.HasSuffix(name, "_dob") || name == "born" {
			if cols == nil {
				cols = map[int]bool{}
			}
			cols[k] = true
		}
	}
	return cols
}

// csvDOB reports the dates in the columns whose header names a birth date.
func (p *piiScanner) csvDOB(line []byte, sep byte, cols map[int]bool, ms []match) []match {
	for k, s := range csvFields(line, sep) {
		if !cols[k] {
			continue
		}
		for s < len(line) && (line[s] == '"' || line[s] == ' ') {
			s++
		}
		if s < len(line) && isDigit(line[s]) {
			if _, e, ok := matchDate(line, s, p.maxYear); ok {
				ms = append(ms, match{KindDateOfBirth, s, e})
			}
		}
	}
	return ms
}

// ScanPaths scans files and directories (recursively; .git directories,
// symbolic links met in the walk and binary files are skipped and listed in
// the report). Findings and skips are in walk order: roots in argument
// order, directory entries in lexical order, then line and column.
func (s *Scanner) ScanPaths(ctx context.Context, paths ...string) (*Report, error) {
	var files []string
	rep := newReport()
	for _, p := range paths {
		// a symbolic link named on the command line is followed; links
		// met during the walk are not
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(p); err == nil {
				if fi.Mode().IsRegular() {
					files = append(files, p)
					continue
				}
				if fi.IsDir() {
					p += string(filepath.Separator)
				}
			}
		}
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("compliance: walk %s: %w", path, err)
			}
			switch {
			case d.IsDir():
				if d.Name() == ".git" && path != p {
					rep.Skipped = append(rep.Skipped, Skipped{File: path, Reason: "git metadata directory"})
					return filepath.SkipDir
				}
			case d.Type().IsRegular():
				files = append(files, path)
			default:
				rep.Skipped = append(rep.Skipped, Skipped{File: path, Reason: "not a regular file"})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	type result struct {
		idx  int
		f    []Finding
		n    int64
		skip string
		err  error
	}
	jobs := make(chan int)
	results := make(chan result)
	var wg sync.WaitGroup
	for w := 0; w < max(1, s.workers); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := range jobs {
				f, n, skip, err := s.scanFile(ctx, files[idx])
				results <- result{idx, f, n, skip, err}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for idx := range files {
			select {
			case jobs <- idx:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()
	// Results are merged in walk order, so the report (and which findings
	// MaxFindings keeps) does not depend on which worker finished first.
	var firstErr error
	pending := map[int]result{}
	next := 0
	for r := range results {
		pending[r.idx] = r
		for {
			r, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			switch {
			case r.err != nil:
				if firstErr == nil {
					firstErr = r.err
				}
			case r.skip != "":
				rep.Skipped = append(rep.Skipped, Skipped{File: files[r.idx], Reason: r.skip})
			default:
				rep.Files++
				rep.Bytes += r.n
				for _, f := range r.f {
					rep.add(f, s.maxFindings)
				}
			}
		}
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return rep, nil
}

// scanFile scans one file. A gzip file (by its magic bytes) is scanned
// decompressed, as a stream; a file with a NUL byte in its first 8 KiB (after
// decompression) is binary and skipped, with the reason returned.
func (s *Scanner) scanFile(ctx context.Context, path string) ([]Finding, int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, "", fmt.Errorf("compliance: %w", err)
	}
	defer f.Close()
	name := path
	br := bufio.NewReaderSize(f, 8192)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, 0, "", fmt.Errorf("compliance: read %s: gzip: %w", path, err)
		}
		defer zr.Close()
		r = zr
		name = strings.TrimSuffix(path, filepath.Ext(path)) // data.csv.gz reads as data.csv
	}
	head := make([]byte, 8192)
	k, err := io.ReadFull(r, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, 0, "", fmt.Errorf("compliance: read %s: %w", path, err)
	}
	if bytes.IndexByte(head[:k], 0) >= 0 {
		return nil, 0, "binary (NUL byte in the first 8 KiB)", nil
	}
	st := newFileState(name)
	fs, n, err := s.scan(ctx, path, st, io.MultiReader(bytes.NewReader(head[:k]), r))
	return fs, n, "", err
}
