import Foundation
import Model
import Recognizer
import Testing
import TestSupport
@testable import Adaptation

@Suite struct CLITests {
    @Test func adaptRefusesBadInvocationsWithOneLineErrors() throws {
        try withTemporaryDirectory { dir in
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model)
            let data = try writeToneData(dir)
            let out = dir.appendingPathComponent("out.safetensors").path
            func adapt(_ extra: [String]) throws -> ProcessResult {
                try runEarshot(["adapt"] + extra, scratch: dir)
            }
            let usage = try adapt(["--base", model])
            #expect(usage.status == 64 && usage.stderr.contains("--out"))
            let text = dir.appendingPathComponent("phrases.txt")
            try Data("go up\n".utf8).write(to: text)
            let noAudio = dir.appendingPathComponent("no-audio", isDirectory: true)
            try FileManager.default.createDirectory(at: noAudio, withIntermediateDirectories: true)
            try Data("notes\n".utf8).write(to: noAudio.appendingPathComponent("notes.txt"))
            let cache = dir.appendingPathComponent("cache")
            let link = dir.appendingPathComponent("link").path
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: dir.path)
            // A line with no word the model can spell: refused before any caching or training.
            let badText = dir.appendingPathComponent("bad.txt")
            try Data("go up\n42\n".utf8).write(to: badText)

            let cases: [([String], String)] = [
                (["--out", out], "nothing to adapt to: give --data"),
                (["--data", dir.appendingPathComponent("none").path, "--out", out], "earshot: --data \(dir.appendingPathComponent("none").path): no such file or folder"),
                (["--text", dir.appendingPathComponent("none.txt").path, "--out", out], "earshot: --text \(dir.appendingPathComponent("none.txt").path): no such file or folder"),
                (["--text", text.path, "--out", out, "--vocabulary", "shut"], "--vocabulary shut: must be 'auto', 'closed' or 'open'"),
                (["--data", data.path, "--out", out, "--anchor=-1"], "--anchor -1.0: must be 0 or more"),
                (["--data", data.path, "--out", out, "--layers", "0"], "earshot: --layers 0: at least one layer must be trained"),
                (["--data", data.path, "--out", out, "--layers", "5", "--encoder-blocks", "4"], "the model has only 8 parameterised layers"),
                (["--data", data.path, "--out", dir.appendingPathComponent("no/such/folder/x.safetensors").path], "does not exist"),
                (["--data", data.path, "--out", model], "is the base model"),
                (["--data", data.path, "--out", link + "/m.safetensors"], "is the base model"),
                (["--text", text.path, "--out", text.path], "is the --text file"),
                (["--data", data.path, "--out", ""], "--out '': name the file to write"),
                (["--data", data.path, "--val", data.path, "--out", out], "--val \(data.path) is --data"),
                (["--data", data.path, "--out", dir.appendingPathComponent("new").path + "/"], "name the file to write"),
                (["--data", data.path, "--text", badText.path, "--out", out], "--text \(badText.path): domain text line 2 ('42') has no word the model can spell"),
                (["--data", data.path, "--out", out, "--general-share", "0.5"], "only applies with --general"),
                (["--data", data.path, "--out", out, "--val-fraction", "1.5"], "--val-fraction 1.5: must be in [0, 1)"),
                (["--data", noAudio.path, "--out", out], "data \(noAudio.path): no manifest.tsv and no audio files"),
                (["--data", data.path, "--out", noAudio.path], "--out \(noAudio.path) is a folder; name the file to write"),
            ]
            for (arguments, message) in cases {
                let r = try adapt(["--base", model, "--cache", cache.path] + arguments)
                #expect(r.status == 1, "\(arguments)")
                #expect(r.stderr.contains(message), "\(arguments): \(r.stderr)")
                #expect(r.stderr.split(separator: "\n").count == 1, "\(arguments): \(r.stderr)")
            }
            // A mistyped base is named before a rehearsal set is synthesised into the cache.
            let typo = dir.appendingPathComponent("typo.safetensors").path
            let mistyped = try adapt(["--base", typo, "--cache", cache.path, "--data", data.path, "--rehearse", "--out", out])
            #expect(mistyped.status == 1 && mistyped.stderrLines == ["earshot: --base \(typo): no such file"], "\(mistyped.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out))
            // A refused run leaves nothing behind, not even an empty cache folder.
            #expect(!FileManager.default.fileExists(atPath: cache.path))
        }
    }

    @Test func textAloneAddsAClosedDomainDecodingToTheBaseModel() throws {
        try withTemporaryDirectory { dir in
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model)
            let text = dir.appendingPathComponent("phrases.txt")
            try Data("Go up\ngo down\n\n".utf8).write(to: text)
            let out = dir.appendingPathComponent("domain.safetensors").path
            let r = try runEarshot(["adapt", "--base", model, "--text", text.path, "--vocabulary", "closed", "--out", out], scratch: dir)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("domain LM:") && r.stdout.contains("closed vocabulary") && r.stdout.contains("no validation audio"))
            let adapted = try ModelFile.load(path: out)
            let domain = try #require(try adapted.domainDecoding(file: out))
            #expect(domain.closedVocabulary)
            #expect(Set(domain.words) == ["go", "up", "down"])
            // Only the decoding was added: the weights are the base model's.
            #expect(adapted.parameters == (try ModelFile.load(path: model)).parameters)
            guard case .object(let record)? = adapted.description.provenance["domain_text"] else {
                Issue.record("no domain_text provenance"); return
            }
            #expect(record["path"] == .string(text.path))
        }
    }

    @Test func dataAndTextTuneTheDomainDecodingOnTheValidationSplit() throws {
        try withTemporaryDirectory { dir in
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model)
            let data = try writeToneData(dir)
            let words = try FileManager.default.contentsOfDirectory(atPath: data.path).filter { $0.hasSuffix(".txt") }
                .map { try String(contentsOf: data.appendingPathComponent($0), encoding: .utf8) }
            let text = dir.appendingPathComponent("phrases.txt")
            try Data(words.joined(separator: "\n").utf8).write(to: text)
            let out = dir.appendingPathComponent("adapted.safetensors").path
            let r = try runEarshot(["adapt", "--base", model, "--data", data.path, "--text", text.path, "--out", out, "--epochs", "2",
                                    "--val-fraction", "0.4", "--cache", dir.appendingPathComponent("cache").path], scratch: dir)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("tuning the domain LM on"))
            #expect(r.stdout.contains("domain LM:") && r.stdout.contains("validation WER"))
            let domain = try #require(try ModelFile.load(path: out).domainDecoding(file: out))
            #expect(domain.tuning != nil)
        }
    }

    @Test func adaptWritesTheModelAndReportsBeforeAndAfter() throws {
        try withTemporaryDirectory { dir in
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model)
            let data = try writeToneData(dir)
            try Data("42".utf8).write(to: data.appendingPathComponent("up.txt"))
            let out = dir.appendingPathComponent("adapted.safetensors").path
            let r = try runEarshot(["adapt", "--base", model, "--data", data.path, "--out", out, "--epochs", "2",
                                    "--val-fraction", "0.34", "--cache", dir.appendingPathComponent("cache").path], scratch: dir)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("before:") && r.stdout.contains("after:") && r.stdout.contains("WER"))
            // Not a terminal: plain progress lines, and the skipped item named with its reason. 5 usable
            // recordings: 2 validation as recorded, 3 training at the default five speeds.
            #expect(r.stderr.contains("caching activations: 17/17"), "\(r.stderr)")
            #expect(r.stderr.contains("up.wav") && r.stderr.contains("cannot emit"))
            #expect(!r.stderr.contains("\r"))
            let adapted = try ModelFile.load(path: out)
            #expect(adapted.description.provenance["trainer"] == .string("earshot adapt"))
        }
    }
}
