package greet

// Greeting is the first line of the module's shared greeting.
func Greeting(data []byte) string {
	for i, c := range data {
		if c == '\n' {
			return string(data[:i])
		}
	}
	return string(data)
}
