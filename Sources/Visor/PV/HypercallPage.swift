// The hypercall page Visor writes into guest RAM when the guest asks for it (MSR
// `PVDiscovery.hypercallPageMSR`): one 32-byte stub per hypercall number, so the guest calls
// `page + 32 * number` and never hard-codes how it traps to Visor. Spec: docs/pv-abi.md.
//
// Stub n (x86-64):
//
//     b8 nn nn nn nn     mov    $n, %eax
//     e5 f8              in     $0xf8, %eax      ; traps to Visor on every engine
//     48 63 c0           movslq %eax, %rax       ; the 32-bit result, sign-extended
//     c3                 ret
//     cc ...             int3 padding to 32 bytes
//
// The `in` is a port-read exit on kvm and on the software engines alike; Visor reads the
// registers, performs the call and answers the read with the 32-bit result.

import VisorABI

enum HypercallPage {
    /// The bytes of the stub for hypercall `number`.
    static func stub(number: UInt32) -> [UInt8] {
        let port = UInt8(truncatingIfNeeded: PVDiscovery.trapPort)
        var bytes: [UInt8] = [0xb8]
        withUnsafeBytes(of: number.littleEndian) { bytes.append(contentsOf: $0) }
        bytes += [0xe5, port, 0x48, 0x63, 0xc0, 0xc3]
        bytes += [UInt8](repeating: 0xcc, count: PVDiscovery.stubSize - bytes.count)
        return bytes
    }

    /// The whole 4 KiB page: stubs for `0 ..< Hypercall.count`, the rest int3.
    static let bytes: [UInt8] = {
        var page: [UInt8] = []
        page.reserveCapacity(4096)
        for number in 0..<Hypercall.count { page += stub(number: number) }
        page += [UInt8](repeating: 0xcc, count: 4096 - page.count)
        return page
    }()
}
