// A child the tests or the benchmarks start holds no descriptor of this process beyond 0-2.
// Once it did: a test's `visor run` child inherited the pipe another test thread was reading
// `make`'s output from, under the guest build lock, and waited for that lock, while the reader
// waited for the pipe's end: a deadlock until the hang guards fired.

import Foundation
import Visor
import Testing
import VisorBench

@Suite("Spawning host programs")
struct SpawnTests {
    @Test("spawnUnmasked closes every inherited descriptor from 3 up in the child")
    func childInheritsNoDescriptors() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        // High numbers, without close-on-exec, as a pipe another thread just made would be.
        let high = [fcntl(ends[0], F_DUPFD, 300), fcntl(ends[1], F_DUPFD, 300)]
        defer { for fd in ends + high { close(fd) } }
        #expect(high.allSatisfy { $0 >= 300 })
        let listing = FileManager.default.temporaryDirectory.appendingPathComponent("visor-fds-\(getpid())").path
        defer { unlink(listing) }
        let pid = try spawnUnmasked("/bin/ls", ["/proc/self/fd"]) { actions in
            posix_spawn_file_actions_addopen(&actions, 1, listing, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        }
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid && shellStatus(status) == 0)
        let fds = try String(contentsOfFile: listing, encoding: .utf8).split(separator: "\n").compactMap { Int32($0) }
        #expect(fds.contains(1))
        // ls's own: 0-2 and the one it reads /proc/self/fd through.
        #expect(fds.allSatisfy { $0 <= 3 }, "the child had \(fds)")
    }
}
