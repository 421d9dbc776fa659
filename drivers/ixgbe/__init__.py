"""Emulated Intel 82599 (ixgbe) and its driver, sans I/O.

regs         register map (datasheet offsets), bit constants, emulation-only words
descriptors  advanced RX/TX descriptors as numpy dtypes, batch encode/decode
nic          Nic: the device model; process() does all pending work
wire         pluggable wires: loopback, pair, socket/shm cables, pktgen, udp, tap
driver_core  IxgbeDriver: ixy init sequence, batched rx/tx, stats
l2fwd        ixy-fwd logic (MAC swap, vectorised)
nullnet      NullNet: a device-less Net (sent packets come straight back)
sim          in-process rigs (BumpAllocator, Port) and loopback_cost()
"""
