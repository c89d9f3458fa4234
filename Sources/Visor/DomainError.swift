// What creating a domain can refuse.

import VisorVirtio

/// Errors creating a domain that are the configuration's fault.
public enum DomainError: Error, CustomStringConvertible {
    case invalidVCPUCount(Int)
    /// More virtio devices than the platform has interrupt lines and windows for.
    case tooManyVirtioDevices(Int)
    /// A disk image could not be opened.
    case disk(DiskImageError)
    /// A network interface's TAP could not be opened or set up.
    case network(PacketBackendError)

    public var description: String {
        switch self {
        case .invalidVCPUCount(let n):
            return "a domain needs 1 to \(Domain.maximumVCPUs) vCPUs, not \(n)"
        case .tooManyVirtioDevices(let n):
            return "a domain may have at most \(VirtioPlacement.maximumDevices) virtio devices (disks, network interfaces and a virtio console), not \(n)"
        case .disk(let error):
            return error.description
        case .network(let error):
            return error.description
        }
    }
}
