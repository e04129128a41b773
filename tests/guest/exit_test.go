package guest

// The exit statuses vmm documents for itself (vmm --help; a guest's own
// status passes through). The tests hold the CLI to them.
const (
	exitUsage       = 2
	exitNotStart    = 126
	exitInterrupted = 130
)
