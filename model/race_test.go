package model

import (
	"sync"
	"testing"
)

// TestSharedModelConcurrentUse runs two forward passes of one model at the
// same time (run with -race: the base weights must not be written on use).
func TestSharedModelConcurrentUse(t *testing.T) {
	m := Tiny()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, _, err := m.ComputeLogits([]int{1, 2, 3 + i})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
