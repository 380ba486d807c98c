import Foundation
import Testing
import TestSupport
@testable import Adaptation

@Suite struct RehearsalTests {
    @Test func theListIsSynthesisedOnceIntoAManifestOfRealAudio() throws {
        try withTemporaryDirectory { dir in
            let list = dir.appendingPathComponent("list.tsv")
            try Data("# voice, wpm, text\nen-us+m3\t160\tturn the volume up\n\nen-gb-x-rp+f2\t175\tseven thousand and one\n".utf8).write(to: list)
            let root = dir.appendingPathComponent("cache")
            let set = RehearsalSet(list: list.path)
            let manifest = try set.manifest(root: root)
            let lines = try String(contentsOfFile: manifest, encoding: .utf8).split(separator: "\n")
            #expect(lines == ["0000.wav\tturn the volume up", "0001.wav\tseven thousand and one"])
            let folder = URL(fileURLWithPath: manifest).deletingLastPathComponent()
            for name in ["0000.wav", "0001.wav"] {
                let size = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(name).path)[.size] as? Int ?? 0
                #expect(size > 22_050, "\(name): \(size) bytes, less than half a second of 22 kHz 16-bit audio")
            }
            // Reused, not synthesised again.
            let before = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent("0000.wav").path)[.modificationDate] as? Date
            #expect(try set.manifest(root: root) == manifest)
            #expect(try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent("0000.wav").path)[.modificationDate] as? Date == before)
            // An interrupted synthesis (no manifest, a torn temporary file) is finished by the next run.
            try FileManager.default.removeItem(atPath: manifest)
            try FileManager.default.removeItem(at: folder.appendingPathComponent("0001.wav"))
            try Data("torn".utf8).write(to: folder.appendingPathComponent(".0001.wav.99999.tmp"))
            #expect(try set.manifest(root: root) == manifest)
            let redone = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent("0001.wav").path)[.size] as? Int ?? 0
            #expect(redone > 22_050)
            // Another list is another folder.
            try Data("en-us+m3\t150\topen the terminal\n".utf8).write(to: list)
            #expect(try set.manifest(root: root) != manifest)
        }
    }

    @Test func pruningRemovesRehearsalFoldersNoRunHasUsed() throws {
        try withTemporaryDirectory { dir in
            let root = dir.appendingPathComponent("cache")
            func make(_ text: String) throws -> URL {
                let list = dir.appendingPathComponent("\(text).tsv")
                try Data("en-us+m3\t160\t\(text)\n".utf8).write(to: list)
                return URL(fileURLWithPath: try RehearsalSet(list: list.path).manifest(root: root)).deletingLastPathComponent()
            }
            let old = try make("open the door"), reused = try make("close the door"), fresh = try make("lock the door")
            try backdateFiles(in: old); try backdateFiles(in: reused)
            // A stranger's files in a folder named like ours keep it.
            let lookalike = root.appendingPathComponent("rehearsal-" + String(repeating: "0", count: 24))
            try FileManager.default.createDirectory(at: lookalike, withIntermediateDirectories: true)
            try Data("mine".utf8).write(to: lookalike.appendingPathComponent("notes.txt"))
            try backdateFiles(in: lookalike)
            // A run that uses a set renews it.
            _ = try make("close the door")
            let report = ActivationCache.prune(root: root, olderThan: 30 * 86_400)
            #expect(report.folders == 1 && report.entries == 2, "\(report)")
            #expect(!FileManager.default.fileExists(atPath: old.path))
            for kept in [reused, fresh, lookalike] { #expect(FileManager.default.fileExists(atPath: kept.path), "\(kept.lastPathComponent)") }
        }
    }

    @Test func badListsAndAMissingProgramAreNamed() throws {
        try withTemporaryDirectory { dir in
            let list = dir.appendingPathComponent("list.tsv")
            let bad: [(list: String, reason: String)] = [
                ("en-us+m3\t160\tfine\nen-us+m3\tfast\tnot a number\n", "line 2 is not 'voice<TAB>words-per-minute<TAB>text'"),
                ("# only a comment\n", "the rehearsal sentence list is empty"),
                // A tab in the text would break the manifest made from the list.
                ("en-us+m3\t160\tfine\nen-us+m3\t160\ttwo\tparts\n", "line 2 is not 'voice<TAB>words-per-minute<TAB>text'"),
                ("en-us+m3\t160\tfine\nen-us+nosuchvariant\t160\tfine\n",
                 "line 2: espeak-ng has no voice variant 'nosuchvariant' (espeak-ng --voices=variant lists them)"),
                ("xx-nowhere+m3\t160\tfine\n", "line 1: espeak-ng has no language 'xx-nowhere' (espeak-ng --voices lists them)"),
            ]
            for c in bad {
                try Data(c.list.utf8).write(to: list)
                #expect(throws: AdaptError.data(path: list.path, reason: c.reason)) { try RehearsalSet(list: list.path).manifest(root: dir) }
                // Windows line ends read the same.
                try Data(c.list.replacingOccurrences(of: "\n", with: "\r\n").utf8).write(to: list)
                #expect(throws: AdaptError.data(path: list.path, reason: c.reason)) { try RehearsalSet(list: list.path).manifest(root: dir) }
            }
            try Data("en-us+m3\t160\tfine\n".utf8).write(to: list)
            do {
                _ = try RehearsalSet(list: list.path, espeak: "no-such-espeak-program").manifest(root: dir)
                Issue.record("a missing program was not reported")
            } catch {
                #expect("\(error)".contains("install espeak-ng"), "\(error)")
            }
        }
    }
}
