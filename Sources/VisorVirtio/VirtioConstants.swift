// The numbers of the virtio 1.x specification this module speaks: device status bits, feature
// bits, device types and the virtio-mmio ("version 2") register offsets. Names follow the spec.

/// The device status field (virtio 1.x §2.1): the driver sets bits as it brings the device up;
/// the device sets DEVICE_NEEDS_RESET when it can no longer go on.
public enum VirtioStatus {
    public static let acknowledge: UInt32 = 1
    public static let driver: UInt32 = 2
    public static let driverOK: UInt32 = 4
    public static let featuresOK: UInt32 = 8
    public static let deviceNeedsReset: UInt32 = 64
    public static let failed: UInt32 = 128
}

/// Transport and ring feature bits shared by every device type (virtio 1.x §6).
public enum VirtioFeature {
    /// VIRTIO_F_INDIRECT_DESC: a descriptor may point at a table of descriptors.
    public static let indirectDescriptors: UInt64 = 1 << 28
    /// VIRTIO_F_EVENT_IDX: used_event / avail_event suppress notifications by index.
    public static let eventIndex: UInt64 = 1 << 29
    /// VIRTIO_F_VERSION_1: a virtio 1.x (non-legacy) device; required by the version 2 MMIO layout.
    public static let version1: UInt64 = 1 << 32
}

/// Device type numbers (virtio 1.x §5).
public enum VirtioDeviceID {
    public static let network: UInt32 = 1
    public static let block: UInt32 = 2
    public static let console: UInt32 = 3
}

/// Bits of the MMIO InterruptStatus register (virtio 1.x §4.2.2).
public enum VirtioInterrupt {
    /// The device used a buffer in at least one queue.
    public static let usedBuffer: UInt32 = 1
    /// The configuration changed (or the device needs a reset).
    public static let configurationChange: UInt32 = 2
}

/// Register offsets of the virtio-mmio transport, version 2 layout (virtio 1.x §4.2.2).
public enum VirtioMMIORegister {
    public static let magicValue: UInt64 = 0x000
    public static let version: UInt64 = 0x004
    public static let deviceID: UInt64 = 0x008
    public static let vendorID: UInt64 = 0x00c
    public static let deviceFeatures: UInt64 = 0x010
    public static let deviceFeaturesSel: UInt64 = 0x014
    public static let driverFeatures: UInt64 = 0x020
    public static let driverFeaturesSel: UInt64 = 0x024
    public static let queueSel: UInt64 = 0x030
    public static let queueNumMax: UInt64 = 0x034
    public static let queueNum: UInt64 = 0x038
    public static let queueReady: UInt64 = 0x044
    public static let queueNotify: UInt64 = 0x050
    public static let interruptStatus: UInt64 = 0x060
    public static let interruptACK: UInt64 = 0x064
    public static let status: UInt64 = 0x070
    public static let queueDescLow: UInt64 = 0x080
    public static let queueDescHigh: UInt64 = 0x084
    public static let queueDriverLow: UInt64 = 0x090
    public static let queueDriverHigh: UInt64 = 0x094
    public static let queueDeviceLow: UInt64 = 0x0a0
    public static let queueDeviceHigh: UInt64 = 0x0a4
    public static let configGeneration: UInt64 = 0x0fc
    /// The device-specific configuration space starts here.
    public static let config: UInt64 = 0x100
}
