package kernel

// Linux errno values returned (negated) by system calls.
const (
	ePERM     = 1
	eNOENT    = 2
	eSRCH     = 3
	eINTR     = 4
	eIO       = 5
	eBADF     = 9
	eCHILD    = 10
	eAGAIN    = 11
	eNOMEM    = 12
	eACCES    = 13
	eFAULT    = 14
	eEXIST    = 17
	eNODEV    = 19
	eNOTDIR   = 20
	eINVAL    = 22
	eMFILE    = 24
	eNOTTY    = 25
	eSPIPE    = 29
	eRANGE    = 34
	eNOSYS    = 38
	eTIMEDOUT = 110
)
