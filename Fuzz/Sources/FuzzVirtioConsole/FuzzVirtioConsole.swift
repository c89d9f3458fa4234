// Fuzz target `virtio-console`: a virtio-mmio console (`VirtioConsole`) driven by a hostile
// driver (`VirtioFuzzDriver`, FuzzSupport), with console input from the host arriving in between.
//
// Input: a header byte (bits 0-1: RAM 16, 32, 64 or 128 KiB; bits 2-4: the input queue's
// capacity, 1-8 × 64 bytes), then the driver's operations (two queues: receiveq0 0,
// transmitq0 1, so ops 4-6 take a queue byte). Operation 8 types host input: a length byte, the
// bytes. Beyond the driver's invariants: the model never takes more input than it has room for,
// and output is passed on in pieces of at most the transfer chunk (4096 bytes here).

import FuzzSupport
import VisorCore
import VisorVirtio

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVirtioConsole(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let header = input.byte()
    let ramSize = UInt64(16 << 10) << UInt64(header & 3)
    guard let memory = try? GuestMemory(size: ramSize) else { return 0 }
    let capacity = (Int((header >> 2) & 7) + 1) * 64
    final class Output: @unchecked Sendable { var bytes = 0 }
    let output = Output()
    let console = VirtioConsole(queueSize: 16, inputCapacity: capacity, transferChunk: 4096) { bytes in
        require(bytes.count <= 4096, "an output piece of \(bytes.count) bytes, past the 4096-byte transfer chunk")
        output.bytes += bytes.count
    }
    VirtioFuzzDriver.run(model: console, memory: memory, input: &input, hostInput: { input in
        let bytes = input.take(Int(input.byte()))
        let taken = console.receive(bytes)
        require(taken >= 0 && taken <= bytes.count, "receive took \(taken) of \(bytes.count) bytes")
    })
    return 0
}
