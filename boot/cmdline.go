package boot

import "strings"

// The kernel command line follows Linux's conventions for init:
//
//	[amber.OPTION=VALUE ...] [NAME=VALUE ...] [-- ARG ...]
//
// Tokens with a dotted key are kernel options, other NAME=VALUE tokens
// become the program's environment, and tokens after "--" its arguments
// (os.Args[1:]); os.Args[0] is the amber.argv0 option or "app". An
// environment variable whose name has a dot is passed as the option
// amber.env=NAME=VALUE (EnvOption), so any name reaches the program. A
// token with spaces, quotes or backslashes is written in double quotes
// with backslash escapes.

// EnvOption prefixes an environment entry written as a kernel option.
const EnvOption = "amber.env="

// QuoteArg quotes one command-line token if it needs it.
func QuoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\"\\") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// Cmdline builds a command line from kernel options, environment and
// arguments.
func Cmdline(options, env, args []string) string {
	var parts []string
	for _, o := range options {
		parts = append(parts, QuoteArg(o))
	}
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); strings.Contains(k, ".") {
			e = EnvOption + e
		}
		parts = append(parts, QuoteArg(e))
	}
	if len(args) > 0 {
		parts = append(parts, "--")
		for _, a := range args {
			parts = append(parts, QuoteArg(a))
		}
	}
	return strings.Join(parts, " ")
}

// NextToken splits the first token off s, undoing QuoteArg. It returns the
// token's bytes written into dst (which must be at least len(s) long), the
// rest of s and whether a token was found. It allocates nothing, so the
// kernel can use it before the Go runtime runs.
//
//go:nosplit
func NextToken(s []byte, dst []byte) (tok []byte, rest []byte, ok bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
		i++
	}
	if i == len(s) {
		return nil, nil, false
	}
	n := 0
	quoted := false
	for ; i < len(s); i++ {
		c := s[i]
		if !quoted && (c == ' ' || c == '\t' || c == '\n') {
			break
		}
		if c == '"' {
			quoted = !quoted
			continue
		}
		if c == '\\' && quoted && i+1 < len(s) {
			i++
			c = s[i]
		}
		dst[n] = c
		n++
	}
	return dst[:n], s[i:], true
}
