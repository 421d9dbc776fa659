"""Emulated Intel 82599 (ixgbe) and its driver: the pure layer (sans I/O) and the
process shells around it (the `Net` interface itself is drivers/net.py).

regs         register map (datasheet offsets), bit constants, emulation-only words
descriptors  advanced RX/TX descriptors as numpy dtypes, batch encode/decode
nic          Nic: the device model; process() does all pending work
wire         pluggable wire backends: loopback, pair, socket/shm cables, udp, tap
pktgen       PktGenWire: the traffic generator / counting sink wire
frames       the test-frame codec and SeqSeen (sequence-number tracker)
netns        NetNamespace: network namespaces for the tap wire (ip netns)
driver_core  IxgbeDriver: ixy init sequence, batched rx/tx, stats
l2fwd        ixy-fwd logic (MAC swap, vectorised)
nullnet      NullNet: a device-less Net (sent packets come straight back);
             NullNetDomain: the same as a domain exporting Net (RedLeaf's nullnet)
sim          in-process rigs (BumpAllocator, Port) and loopback_cost()

device       IxgbeDevice: the NIC in a device process (domains/device_host.py)
domain       IxgbeNetDriver: the driver domain (binds the device, exports Net)
pktapp       InDriverPktApp: the driver plus a packet application inside it (benchmarks)
shadow       IxgbeShadow: hides driver crashes from Net clients (`shadow = true`)
app          PacketLoop (rx/tx/fwd over any Net) and AppHost (NetApp for a domain)
l2fwd_domain L2Fwd: an ixy-fwd style forwarder domain using Net across a boundary
"""
