"""NVMe: register map, command formats, emulated controller and driver core (sans-I/O).

Modules
-------
``regs``         BAR0 register offsets, field codecs, :class:`regs.Bar` accessor, the
                 emulation-only PCI command word (Bus Master Enable) and quiesce handshake.
``spec``         SQE/CQE layouts, opcodes, status codes, phase tags, PRP walking,
                 Identify controller/namespace structures.  LBA size 4096 (default) or 512.
``store``        :class:`store.FileBlockStore` (disk image: mapped for the batch path,
                 preadv/pwritev otherwise, msync+fdatasync) and
                 :class:`store.MemoryBlockStore` (tests).
``controller``   :class:`controller.NvmeController` - the device model; ``process()``.
``driver_core``  :class:`driver_core.NvmeDriverCore` - init sequence, submit/ring/reap,
                 and the vector batch path (``submit_batch``/``reap_arrays``).
``device``       :class:`device.NvmeDevice` - the controller as a device process.
``domain``       :class:`domain.NvmeDriver` - the driver domain (exports BDev, NvmeBDev).
``shadow``       :class:`shadow.NvmeShadow` - hides driver crashes (``shadow = true``).
``client``       :class:`client.BatchQueue` - client-side request pool for NvmeBDev.
``manifests``    manifest text for a device + driver instance (tests, benchmarks).

Contract for the process shells (device process, driver domain, supervisor)
--------------------------------------------------------------------------
* BAR0 is a shared buffer of ``regs.BAR_SIZE`` bytes mapped by the device process and
  the driver (and the supervisor, which only touches EMU_PCICMD/EMU_QREQ/EMU_QACK).
  Constructing the controller zeroes it ("power on").
* ``dma`` is the device's mapping of the exchange heap; ``[dma_base, dma_limit)``
  should be the *arena* only - never the heap header or ownership table - so a buggy
  driver cannot make the device DMA over heap metadata.
* Device loop: call ``controller.process()`` whenever it may have work: after a
  doorbell wake-up from the driver (eventfd/futex), and periodically (a few ms) so
  control-register changes (CC, NSSR, BME) are noticed without a wake-up.  When it
  returns True, raise the "interrupt" (wake the driver) - ``EMU_IRQCNT`` is also
  bumped, so a driver can poll it instead.
* Driver: ``initialize(step)`` where ``step`` waits a little (or for the interrupt);
  then ``submit_*`` ... ``ring()`` + wake the device; on interrupt ``reap()``.
* Supervisor, on a driver's death, before reclaiming its heap objects:
  ``n = Bar(bar).request_quiesce()``, wake the device, wait until
  ``Bar(bar).quiesce_acked(n)``.  The restarted driver's ``initialize`` resets the
  controller and only then sets BME again; ``inflight()`` of the shadow's copy of the
  requests can be re-issued with ``resubmit()``.
"""
