package netsvc

// startNIC brings up the machine's network interface, if it has one.
func startNIC(s *Service) error { return nil }
