import Testing
import VisorVirtio
@testable import Visor

/// The `--stats` line of a virtio device: counts, and notifications and interrupts per completion.
@Suite struct VirtioStatisticsTests {
    @Test func perCompletionRatios() {
        let line = ExitStatistics.virtioLine(name: "virtio-blk 0 (disk.img)",
                                             VirtioCounters(notifications: 1203, completions: 4096, interrupts: 41))
        #expect(line == "virtio-blk 0 (disk.img): 4096 completed, 1203 notifications (0.29 each), 41 interrupts (0.01 each)")
    }

    @Test func nothingCompleted() {
        let line = ExitStatistics.virtioLine(name: "virtio-blk 1 (ro.img)", VirtioCounters(notifications: 2))
        #expect(line == "virtio-blk 1 (ro.img): 0 completed, 2 notifications, 0 interrupts")
    }

    @Test func reportListsEachDevice() {
        var statistics = ExitStatistics()
        statistics.virtio = [("virtio-blk 0 (a.img)", VirtioCounters(notifications: 1, completions: 1, interrupts: 1))]
        #expect(statistics.report.contains("virtio-blk 0 (a.img): 1 completed, 1 notifications (1.00 each), 1 interrupts (1.00 each)"))
    }
}
