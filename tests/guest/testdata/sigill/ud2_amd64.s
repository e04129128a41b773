#include "textflag.h"

TEXT ·ud2(SB),NOSPLIT,$0-0
	UD2
	RET
