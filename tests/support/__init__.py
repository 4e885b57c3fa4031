"""What the tests share: values, ports, the SMTP sink, real processes, fault injection."""
