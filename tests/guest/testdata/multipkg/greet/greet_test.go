package greet

import (
	"os"
	"testing"
)

func TestGreeting(t *testing.T) {
	data, err := os.ReadFile("../testdata/greeting.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := Greeting(data); got != "hello from the module root" {
		t.Errorf("Greeting = %q", got)
	}
}
