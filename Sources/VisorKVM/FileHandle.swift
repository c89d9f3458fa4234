// An owned file descriptor for /dev/kvm, a VM or a vCPU, closed when the last reference goes.

import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Owns one file descriptor; the descriptor is closed in deinit and never reused while alive.
final class OwnedDescriptor: Sendable {
    let raw: Int32
    init(_ raw: Int32) { self.raw = raw }
    deinit { close(raw) }

    /// ioctl with an integer argument. Retries when interrupted by a signal.
    @discardableResult
    func ioctl(_ request: UInt, _ name: String, value: UInt = 0) throws(KVMError) -> Int {
        while true {
            let rc = ckvm_ioctl_value(raw, request, value)
            if rc == -Int(EINTR) { continue }
            if rc < 0 { throw .ioctlFailed(request: name, errno: Int32(-rc)) }
            return rc
        }
    }

    /// ioctl whose argument is a structure the kernel reads or fills. Retries on EINTR.
    /// SAFETY: `argument` is an inout Swift value of the exact C type the request names, so the
    /// kernel reads or writes exactly `MemoryLayout<T>.size` bytes of memory we own.
    @discardableResult
    func ioctl<T>(_ request: UInt, _ name: String, _ argument: inout T) throws(KVMError) -> Int {
        while true {
            let rc = withUnsafeMutablePointer(to: &argument) { ckvm_ioctl_pointer(raw, request, $0) }
            if rc == -Int(EINTR) { continue }
            if rc < 0 { throw .ioctlFailed(request: name, errno: Int32(-rc)) }
            return rc
        }
    }
}
