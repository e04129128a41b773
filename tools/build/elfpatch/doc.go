// Package elfpatch is the post-link step of `vmm build`: it edits and checks
// the ELF executable the stock Go linker produced, so that the image can boot
// as a unikernel.
//
// The Go linker cannot be told to emit arbitrary ELF notes, yet other VMMs
// find a PVH kernel's 32-bit entry point only through the Xen note
// (XEN_ELFNOTE_PHYS32_ENTRY) in a PT_NOTE segment of the file. AddNotes adds
// such notes after linking, without moving any loaded byte, so the patched
// file still runs as an ordinary Linux process; ReadNotes reads them back for
// the VMM and for tests.
//
// The guest kernel answers system calls as direct function calls, and the
// build rewrites every SYSCALL of the Go runtime into a CALL. A SYSCALL that
// survives outside the kernel would still work, but through the slow trap
// path (or a #UD), so the build should know about it: ScanSyscalls
// disassembles the executable's text and lists the SYSCALL instructions that
// lie outside the functions the caller allows.
package elfpatch
