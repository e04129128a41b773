package main

func main() {
	var m map[string]int
	if len(m) == 0 {
		panic("boom from the guest")
	}
}
