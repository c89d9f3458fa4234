// The host's requests to power off or reboot (`visor shutdown`, `visor reboot`), honoured the way
// the guest's mode allows (Visor's side: `Domain.requestShutdown`, docs/pv-abi.md §6):
//
//   pv      bind VIRQ_SHUTDOWN_REQUEST (PV ABI 1.1); its handler takes the reason with
//           `sched_op shutdown_request`, prints `shutdown requested: poweroff` (or `reboot`) and
//           passes the reason to `sched_op shutdown`;
//   native  the ACPI power button: PM1_EN.PWRBTN_EN set, the SCI (ISA IRQ 9, level-triggered,
//           active high, as Visor's FADT and MADT say and QEMU's `pc` machine has it) routed
//           through the I/O APIC to this CPU; its handler clears PWRBTN_STS, prints
//           `shutdown requested: poweroff (ACPI power button)` and powers off through PM1a_CNT.
//           ACPI has no reboot button: a native guest can only be asked to power off.
//
// The handlers act at once, from interrupt context (they end the guest); a guest with work to
// finish first would set a flag there instead.

public enum ShutdownRequests {
    /// The vector the SCI is routed to in native mode.
    public static let sciVector: UInt32 = 0xed

    /// Starts listening: through PV when `PV.install()` has run (as `Paravirt.setUp()` does in
    /// PV mode), else through the power button (the local APIC must be enabled: `APIC.enable()`,
    /// which native `Paravirt.setUp()` does). Call it on the BSP with interrupts off, after
    /// `Interrupts.setUp()`. Returns how it listens, for a boot message, or nil (with a line
    /// saying why) when it cannot.
    @discardableResult
    public static func listen() -> StaticString? {
        if PV.active {
            let port = PV.bind(virq: VIRQ.shutdownRequest, vcpu: 0, handler: shutdownRequestVIRQHandler)
            guard port > 0 else {
                put("shutdown requests: bind_virq(shutdown_request) failed: ")
                put(port)
                putLine()
                return nil
            }
            return "pv (VIRQ_SHUTDOWN_REQUEST)"
        }
        Interrupts.register(vector: sciVector, handler: shutdownRequestSCIHandler)
        IOAPIC.route(pin: UInt32(PlatformPorts.acpiSCIInterrupt), vector: sciVector, apicID: APIC.id,
                     levelTriggered: true, activeLow: false)
        let status = PlatformPorts.acpiPM1aEvent, enable = PlatformPorts.acpiPM1aEvent + 2
        gk_outw(status, PlatformPorts.acpiPowerButton)     // a press from before boot is stale
        gk_outw(enable, gk_inw(enable) | PlatformPorts.acpiPowerButton)
        return "acpi (power button, SCI on IRQ 9)"
    }
}

/// VIRQ_SHUTDOWN_REQUEST: take the reason, say it, and shut down with it.
let shutdownRequestVIRQHandler: PortHandler = { _, _ in
    var reason: UInt32 = 0
    let taken = PV.call(Hypercall.schedOp, UInt64(SchedOp.shutdownRequest), PV.address(&reason))
    guard taken == 0 else { return }        // -ENOENT: an earlier event already took it
    put("shutdown requested: ")
    switch reason {
    case ShutdownArgument.poweroff: putLine("poweroff")
    case ShutdownArgument.reboot: putLine("reboot")
    default:
        put("reason ")
        put(reason)
        putLine()
    }
    Console.flush()
    let result = PV.shutdown(reason: reason)
    put("shutdown requests: sched_op(shutdown) returned ")
    put(result)
    putLine()
}

/// The SCI: only the power button is enabled, so only its status can be set.
let shutdownRequestSCIHandler: InterruptHandler = { _ in
    let status = PlatformPorts.acpiPM1aEvent
    guard gk_inw(status) & PlatformPorts.acpiPowerButton != 0 else { return }
    gk_outw(status, PlatformPorts.acpiPowerButton)  // write one to clear: the SCI drops before isr.S's EOI
    putLine("shutdown requested: poweroff (ACPI power button)")
    GuestKit.exit(0)
}
