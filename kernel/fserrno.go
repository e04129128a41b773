package kernel

// Linux errno values of the file system and pipes.
const (
	eNXIO        = 6
	eBUSY        = 16
	eXDEV        = 18
	eISDIR       = 21
	eNFILE       = 23
	eFBIG        = 27
	eNOSPC       = 28
	ePIPE        = 32
	eNAMETOOLONG = 36
	eNOTEMPTY    = 39
	eLOOP        = 40
	eOPNOTSUPP   = 95
)
