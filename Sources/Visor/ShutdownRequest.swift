// What the host may ask of a running guest instead of stopping it (`xl shutdown`, `xl reboot`),
// and which way the request went (`Domain.requestShutdown`).

/// The host asks the guest to end itself.
public enum ShutdownRequest: Sendable, Equatable {
    /// Power off cleanly, as after `shutdown -h now`.
    case powerOff
    /// Restart. ACPI has no reboot button, so only a PV guest can be asked this.
    case reboot
}

/// How a shutdown request reached the guest.
public enum ShutdownDelivery: Sendable, Equatable {
    /// Through PV: VIRQ_SHUTDOWN_REQUEST raised, the reason waiting for `sched_op
    /// shutdown_request` (Visor's stand-in for Xen's xenstore `control/shutdown`).
    case paravirtual
    /// The ACPI power button was pressed (PWRBTN_STS set, the SCI raised on ISA IRQ 9).
    case acpiPowerButton
    /// The guest listens for neither (it bound no VIRQ_SHUTDOWN_REQUEST and did not enable the
    /// power button, or it was asked to reboot without PV): nothing was changed.
    case none
}
