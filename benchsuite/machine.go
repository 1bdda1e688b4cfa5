package benchsuite

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where a run happened. Nothing in it identifies a person
// or a host: no hostname, no user, no addresses.
type Machine struct {
	CPUModel    string     `json:"cpu_model"`
	Cores       int        `json:"cores"`
	GOMAXPROCS  int        `json:"gomaxprocs"`
	MemTotalMiB int        `json:"mem_total_mib,omitempty"`
	GoVersion   string     `json:"go_version"`
	OS          string     `json:"os"`
	Arch        string     `json:"arch"`
	Backend     string     `json:"backend"`        // the ML backend (GoMLX) the engine used
	LoadAvg     [3]float64 `json:"load_avg_start"` // 1, 5 and 15 minute load averages when the run began
	GPU         string     `json:"gpu"`            // "none" when the run used no GPU
	Note        string     `json:"note,omitempty"` // e.g. "shared with other builds"
}

// ReadMachine describes this machine now. backend names the ML backend.
func ReadMachine(backend string) Machine {
	m := Machine{
		CPUModel:   cpuModel(),
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		Backend:    backend,
		GPU:        "none",
	}
	m.LoadAvg, _ = LoadAvg()
	m.MemTotalMiB = memTotalMiB()
	return m
}

// LoadAvg reads the 1, 5 and 15 minute load averages (Linux); ok is false
// where they cannot be read.
func LoadAvg() (avg [3]float64, ok bool) {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return avg, false
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return avg, false
	}
	for i := range 3 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return avg, false
		}
		avg[i] = v
	}
	return avg, true
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && (strings.TrimSpace(k) == "model name" || strings.TrimSpace(k) == "Model") {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotalMiB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}
