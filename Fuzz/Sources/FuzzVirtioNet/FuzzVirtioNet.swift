// Fuzz target `virtio-net`: a virtio-mmio network device (`VirtioNet`) driven by a hostile
// driver (`VirtioFuzzDriver`, FuzzSupport), with frames from the host side arriving in between.
//
// Input: a header byte (bits 0-1: RAM 16, 32, 64 or 128 KiB; bit 2: the backend refuses sends;
// bits 3-5: the receive queue's bound, 1-8 frames), then the driver's operations (two queues:
// receiveq 0, transmitq 1, so ops 4-6 take a queue byte). Operation 8 offers the device a frame
// from the host: u16 length (modulo 2048), the bytes. Beyond the driver's invariants: every
// frame the device sends came whole out of guest RAM (never longer than 64 KiB), and frames
// offered are delivered, dropped or still waiting, never more than were offered.

import FuzzSupport
import VisorCore
import VisorVirtio

/// A backend that keeps what the device sends (bounded) and never receives on its own (the
/// fuzzer offers frames through `VirtioNet.offer`; no reader thread is started).
final class FuzzPacketBackend: PacketBackend, @unchecked Sendable {
    var sent = 0
    let refuses: Bool
    init(refuses: Bool) { self.refuses = refuses }
    func send(_ frame: [UInt8]) throws(PacketBackendError) {
        require(frame.count <= 65536, "a frame of \(frame.count) bytes reached the backend")
        if refuses { throw PacketBackendError("refused by the fuzzer") }
        sent += 1
    }
    func receive(acceptingFrames: Bool) -> PacketReceive { .interrupted }
    func interrupt() {}
    func close() {}
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVirtioNet(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let header = input.byte()
    let ramSize = UInt64(16 << 10) << UInt64(header & 3)
    guard let memory = try? GuestMemory(size: ramSize) else { return 0 }
    let backend = FuzzPacketBackend(refuses: header & 4 != 0)
    let mac = MACAddress(bytes: [0x02, 0, 0, 0, 0, 1])!
    let net = VirtioNet(backend: backend, mac: mac, queueSize: 16, receiveBound: Int((header >> 3) & 7) + 1)
    var offered: UInt64 = 0
    VirtioFuzzDriver.run(model: net, memory: memory, input: &input, hostInput: { input in
        let frame = input.take(Int(input.u16() % 2048))
        offered += 1
        _ = net.offer(frame)
    }, check: {
        let c = net.counters
        require(c.received + c.receiveDropped + c.receiveTooLarge <= offered,
                "\(c.received) frames in, \(c.receiveDropped) + \(c.receiveTooLarge) dropped of \(offered) offered")
    })
    return 0
}
