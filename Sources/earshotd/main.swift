// earshotd: the daemon's entry point (configuration, capture, server, signals, sd_notify).
print("earshotd: not built yet")
