// Which device carries a domain's console: `visor run --console`, xl.cfg `console`.
//
// The 16550 (COM1, Linux's ttyS0) is always there and carries the firmware's and the early
// kernel's lines; it moves one byte per port access, each an exit. `virtio` adds a
// virtio-console (Linux's hvc0) after the disks, which moves whole buffers per notification;
// a Linux kernel is told `console=hvc0` (after its own console= parameters, so hvc0 becomes
// /dev/console once its driver is loaded, while ttyS0 keeps the messages from before). Console
// input goes to the virtio console once its driver is live, else where it went before.

import VisorVirtio

public enum ConsoleDevice: String, Sendable, CaseIterable, Codable {
    case serial
    case virtio

    /// Why `text` names no console device (naming the choices), or nil when it names one.
    public static func problem(withName text: String) -> String? {
        guard ConsoleDevice(rawValue: text) == nil else { return nil }
        return "'\(text)' is not a console device: choose serial (the 16550 UART, ttyS0) or virtio (virtio-console, hvc0)"
    }

    /// The kernel parameter a Linux kernel gets for this console, if it needs one.
    var linuxParameter: String? { self == .virtio ? "console=hvc0" : nil }
}

extension DomainConfiguration {
    /// The virtio-mmio devices the domain has: its disks, its network interfaces, then the virtio
    /// console if it has one (the order of their windows and interrupt lines).
    public var virtioDeviceCount: Int { disks.count + networks.count + (console == .virtio ? 1 : 0) }
}
