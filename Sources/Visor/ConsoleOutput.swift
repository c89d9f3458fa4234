// Guest console output on its way to a host file descriptor.
//
// Guests write their console under the domain's platform lock (a UART byte, a console_io
// hypercall), so that write must never wait for the host side: a terminal or pipe that stops
// reading would stall the guest's vCPUs and, worse, every stop request (timeout, Ctrl-], SIGTERM)
// that needs the same lock. So the guest side only appends to a bounded buffer, and a writer
// thread of its own does the (blocking) writes. When the buffer is full, as with a guest that
// floods its console faster than the host reads it, further bytes are dropped and counted
// (xenconsoled likewise bounds each domain's buffer and discards what goes beyond it).

import VisorCore
#if canImport(Glibc)
import Glibc
#endif

/// A bounded buffer in front of one output file descriptor, drained by its own thread.
final class ConsoleOutput: @unchecked Sendable {
    // Unchecked Sendable: every mutable field is guarded by `lock`.

    /// Bytes waiting to be written at most; what does not fit is dropped.
    static let capacity = 1 << 20

    private let fd: Int32
    private let lock = HostMutex()
    /// Signalled when bytes arrive or the output closes (the writer waits on it).
    private let arrived = HostCondition()
    /// Signalled when the writer has written what it took (flush waits on it).
    private let progressed = HostCondition()
    private var pending: [UInt8] = []
    /// The writer holds a chunk it took out of `pending` and has not finished writing.
    private var writing = false
    /// The descriptor failed (the terminal or reader went away): drop everything from now on.
    private var broken = false
    private var dropped: UInt64 = 0
    private var writer: HostThread?

    init(fd: Int32) {
        self.fd = fd
    }

    /// Guest output bytes dropped so far because the host side did not take them in time.
    var droppedBytes: UInt64 { lock.withLock { dropped } }

    /// Queues `bytes` for writing; never blocks on the descriptor. The writer thread starts with
    /// the first bytes, so it inherits the caller's signal mask (Visor's threads all block the
    /// stop signals).
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        lock.withLock {
            guard !broken else {
                dropped &+= UInt64(bytes.count)
                return
            }
            let room = Self.capacity - pending.count
            if bytes.count > room { dropped &+= UInt64(bytes.count - room) }
            pending.append(contentsOf: bytes.prefix(max(room, 0)))
            if writer == nil { writer = HostThread { [self] in writeLoop() } }
            arrived.signal()
        }
    }

    /// Waits until everything queued has been written, or until CLOCK_MONOTONIC reaches
    /// `deadline` (nanoseconds); what is still queued then is dropped (and counted). Returns
    /// whether it all went out.
    @discardableResult
    func flush(untilHostNanoseconds deadline: UInt64) -> Bool {
        lock.withLock {
            while (!pending.isEmpty || writing) && !broken {
                guard MonotonicClock.hostNanoseconds() < deadline else {
                    dropped &+= UInt64(pending.count)
                    pending.removeAll()
                    return false
                }
                progressed.wait(lock, untilHostNanoseconds: deadline)
            }
            return true
        }
    }

    private func writeLoop() {
        var chunk: [UInt8] = []
        lock.lock()
        while true {
            while pending.isEmpty { arrived.wait(lock, untilHostNanoseconds: nil) }
            swap(&chunk, &pending)
            writing = true
            lock.unlock()
            let written = writeAll(chunk)
            lock.lock()
            writing = false
            if written < chunk.count {
                broken = true
                dropped &+= UInt64(chunk.count - written + pending.count)
                pending.removeAll()
            }
            chunk.removeAll(keepingCapacity: true)
            progressed.broadcast()
            if broken {
                lock.unlock()
                return
            }
        }
    }

    /// Writes `bytes`, blocking as long as the descriptor needs; returns how many went out
    /// (fewer than all only if the descriptor failed).
    private func writeAll(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return 0 }
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, base + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return offset
                }
                offset += n
            }
            return offset
        }
    }
}
