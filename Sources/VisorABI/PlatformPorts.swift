// The I/O ports of Visor's PC-like platform that guests may rely on.

/// Fixed I/O port addresses of the emulated platform.
public enum PlatformPorts {
    /// COM1, a 16550A UART: eight registers from here.
    public static let com1: UInt16 = 0x3f8
    /// Number of registers of a 16550A.
    public static let uartRegisterCount: UInt16 = 8
    /// QEMU's `isa-debug-exit` port: writing `v` ends the guest with status `(v << 1) | 1`.
    public static let debugExit: UInt16 = 0xf4
    /// Width of the debug-exit port in bytes (QEMU's `iosize=4`).
    public static let debugExitSize: UInt16 = 4
}
