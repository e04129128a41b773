package words

import (
	"os"
	"testing"

	"example.com/multipkg/greet"
)

// The module's shared test data, two levels up, as tests of a
// multi-package module reach it; and the package's own directory is the
// working directory.
func TestSharedTestdata(t *testing.T) {
	data, err := os.ReadFile("../../testdata/greeting.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := greet.Greeting(data); got != "hello from the module root" {
		t.Errorf("Greeting = %q", got)
	}
	if _, err := os.Stat("words_test.go"); err != nil {
		t.Errorf("not in the package's directory: %v", err)
	}
	// A nested module is not part of this one: not packed.
	if _, err := os.Stat("../../nested/go.mod"); err == nil {
		t.Error("the nested module was packed")
	}
}
