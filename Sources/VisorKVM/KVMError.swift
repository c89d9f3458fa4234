// Errors of the kvm engine, each with the message a user sees.

#if canImport(Glibc)
import Glibc
#endif

/// What went wrong talking to Linux KVM.
public enum KVMError: Error, Equatable, CustomStringConvertible {
    /// `/dev/kvm` does not exist: the host has no KVM (or it is not exposed to this container).
    case deviceMissing(path: String)
    /// `/dev/kvm` exists but this user may not open it.
    case permissionDenied(path: String)
    /// `/dev/kvm` could not be opened for another reason.
    case openFailed(path: String, errno: Int32)
    /// The kernel speaks a KVM API version other than 12, the only stable one.
    case unsupportedAPIVersion(Int)
    /// A capability Visor needs is missing.
    case missingCapability(String)
    /// An ioctl failed.
    case ioctlFailed(request: String, errno: Int32)
    /// mmap of a vCPU's kvm_run area failed.
    case mmapFailed(errno: Int32)

    public var description: String {
        switch self {
        case .deviceMissing(let path):
            return "\(path) does not exist: the kvm engine needs Linux KVM on this host"
        case .permissionDenied(let path):
            return "permission denied opening \(path): add this user to the 'kvm' group or run as root"
        case .openFailed(let path, let e):
            return "cannot open \(path): \(Self.errorText(e))"
        case .unsupportedAPIVersion(let v):
            return "KVM API version \(v) is not supported (Visor needs version 12)"
        case .missingCapability(let name):
            return "this host's KVM lacks \(name), which Visor needs"
        case .ioctlFailed(let request, let e):
            return "\(request) failed: \(Self.errorText(e))"
        case .mmapFailed(let e):
            return "mapping the vCPU's kvm_run area failed: \(Self.errorText(e))"
        }
    }

    static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text) + " (errno \(code))"
    }
}
