// The built-in guests are built one at a time, on demand, with a line on stderr when a build
// actually happens (issue #10 item 7). Each test builds into its own temporary folder, from a
// copy of Guests/ (and of the VisorABI sources the guests compile) where it touches sources, so
// the checkout's own build and the tests running beside this one are not disturbed.

import Foundation
import Synchronization
import Testing
import Visor

/// Runs `body` on a thread of its own and waits for it without holding one of Swift
/// concurrency's threads: a test that waits minutes for guest builds must not keep the other
/// tests (the pool has one thread per core) from running meanwhile.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

@Suite("Guest catalog", .timeLimit(.minutes(10)))
struct GuestCatalogTests {
    /// Lines a catalog announced.
    final class Announcements: Sendable {
        private let lines = Mutex<[String]>([])
        func record(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    static func temporaryFolder(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("visor-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func builtImages(in folder: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".elf") }.sorted()
    }

    /// Sets the modification time of `url` (and of everything under it, for a folder).
    static func setModificationDate(_ date: Date, of url: URL) throws {
        let fm = FileManager.default
        var files = [url.path]
        if let enumerator = fm.enumerator(atPath: url.path) {
            files += enumerator.compactMap { $0 as? String }.map { url.appendingPathComponent($0).path }
        }
        for file in files { try fm.setAttributes([.modificationDate: date], ofItemAtPath: file) }
    }

    @Test("visor run builds the guest asked for only, says so on stderr once across two runs at once; then silent")
    func buildsOnlyWhatIsAsked() async throws {
        let output = try Self.temporaryFolder("guests-out")
        defer { try? FileManager.default.removeItem(at: output) }
        let run: @Sendable () throws -> ProcessResult = {
            try runProcess("/usr/bin/env", ["VISOR_GUESTS_OUT=\(output.path)", Host.visorPath, "run", "--engine", "interp",
                                            "hello"], timeout: 240)
        }
        // Two at once, as two terminals or parallel tests: the build lock lets one build (and
        // announce), and the other find the image current when it gets the lock.
        async let first = onOwnThread(run)
        async let second = onOwnThread(run)
        let both = try await [first, second]
        #expect(both.map(\.stdout) == ["Hello from a Visor guest!\n", "Hello from a Visor guest!\n"])
        #expect(both.map(\.status) == [0, 0], "stderr: \(both.map(\.stderr))")
        let lines = both.flatMap { $0.stderr.split(separator: "\n").map(String.init) }
        #expect(lines == ["visor: building guest 'hello' (first use)…"])
        #expect(try Self.builtImages(in: output) == ["hello.elf"], "only the guest asked for is built")

        let again = try await onOwnThread(run)
        #expect(again.status == 0)
        #expect(again.stderr == "", "an image that is up to date is not announced")
    }

    @Test("a changed GuestKit source or header, or boot stub, rebuilds the guest")
    func changedSourcesRebuild() async throws {
        // A private copy of the sources the Makefile reads: Guests/ and ../Sources/VisorABI.
        let tree = try Self.temporaryFolder("guests-src")
        defer { try? FileManager.default.removeItem(at: tree) }
        let real = Checkout.root.appendingPathComponent("Guests")
        try FileManager.default.copyItem(at: real, to: tree.appendingPathComponent("Guests"))
        try FileManager.default.createDirectory(at: tree.appendingPathComponent("Sources"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: real.deletingLastPathComponent().appendingPathComponent("Sources/VisorABI"),
                                         to: tree.appendingPathComponent("Sources/VisorABI"))
        // Every source two hours old; the build's outputs are then newer than all of them.
        let now = Date()
        try Self.setModificationDate(now.addingTimeInterval(-7200), of: tree)
        let said = Announcements()
        let out = tree.appendingPathComponent("out")
        let catalog = GuestCatalog(sourceDirectory: tree.appendingPathComponent("Guests"), outputDirectory: out,
                                   announce: { said.record($0) })
        let build: @Sendable () throws -> Void = { _ = try catalog.image(named: "hello") }
        try await onOwnThread(build)
        #expect(said.all == ["visor: building guest 'hello' (first use)…"])

        // Outputs an hour old, still newer than every source: nothing to build (the control).
        try Self.setModificationDate(now.addingTimeInterval(-3600), of: out)
        try await onOwnThread(build)
        #expect(said.all.count == 1, "no source changed, nothing rebuilt: \(said.all)")

        // One source at a time edited half an hour ago, newer than the outputs: a rebuild.
        // (A VisorABI source is a prerequisite of the guest's Swift object as GuestKit's are.)
        let changed = ["Guests/GuestKit/Console.swift", "Guests/GuestKit/frame.h", "Guests/Boot/multiboot.S",
                       "Guests/GuestKit/runtime.c", "Sources/VisorABI/Hypercall.swift"]
        for (n, file) in changed.enumerated() {
            let source = tree.appendingPathComponent(file)
            try Self.setModificationDate(now.addingTimeInterval(-3600), of: out)
            try Self.setModificationDate(now.addingTimeInterval(-1800), of: source)
            try await onOwnThread(build)
            #expect(said.all.count == n + 2, "changing \(file) rebuilds hello")
            #expect(said.all.last == "visor: building guest 'hello' (sources changed)…")
            try Self.setModificationDate(now.addingTimeInterval(-7200), of: source)
        }

        // An image newer than every source is used without asking make at all (each ask costs
        // two processes per `visor create`): a Makefile make cannot read, made to look old,
        // is not even read.
        let makefile = tree.appendingPathComponent("Guests/Makefile")
        try Data("this is not a makefile\n".utf8).write(to: makefile)
        try Self.setModificationDate(now.addingTimeInterval(-7200), of: makefile)
        try Self.setModificationDate(now.addingTimeInterval(-3600), of: out)
        try await onOwnThread(build)
        #expect(said.all.count == changed.count + 1)
        // Once it is newer than the image, make is asked, and its failure is reported.
        try Self.setModificationDate(now.addingTimeInterval(-1800), of: makefile)
        #expect(throws: GuestCatalogError.self) { try catalog.image(named: "hello") }
    }
}
