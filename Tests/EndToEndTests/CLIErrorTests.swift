import Foundation
import Model
import Recognizer
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The CLI's failure paths: each mistake gives exit status 1, nothing on stdout and exactly one stderr
/// line, `earshot: ...`, naming the flag, value or file at fault.
extension CLITests {
    /// Checks the one-line failure form; `mentions` must all appear in the line.
    func expectOneLineFailure(_ r: ProcessResult, _ what: String, mentions: [String]) {
        #expect(r.status == 1, "\(what): exit status \(r.status)")
        #expect(r.stdout.isEmpty, "\(what): stdout '\(r.stdout)'")
        let errorLines = r.stderrLines
        #expect(errorLines.count == 1 && errorLines.allSatisfy { $0.hasPrefix("earshot: ") },
                "\(what): expected one 'earshot: ...' line, got:\n\(r.stderr)")
        for m in mentions { #expect(r.stderr.contains(m), "\(what): stderr should mention '\(m)':\n\(r.stderr)") }
    }

    @Test func decodingFlagMistakesFailWithOneLineNamingTheFlag() throws {
        try withFixture { f in
            let audio = try f.speak(["yes"])[0].path
            let missingLM = f.dir.appendingPathComponent("missing.arpa").path
            let malformedLM = f.dir.appendingPathComponent("malformed.arpa")
            try Data("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\n\\end\\\n".utf8).write(to: malformedLM)
            let cases: [(args: [String], mentions: [String])] = [
                // A character the model cannot spell would make the hotword unreachable.
                (["--hotword", "naïve"], ["--hotword", "naïve", "ï"]),
                (["--hotword", "open-terminal"], ["--hotword", "'-'"]),
                // The text after the last ':' is a weight: it must be a finite number.
                (["--hotword", "yes:abc"], ["--hotword", "yes:abc", "abc"]),
                (["--hotword", "yes:nan"], ["--hotword", "yes:nan"]),
                (["--hotword", "yes:inf"], ["--hotword", "yes:inf"]),
                (["--hotword", " :2"], ["--hotword", "no words"]),
                (["--beam", "0"], ["--beam 0"]),
                // Greedy decoding cannot fuse an LM or boost hotwords: an explicit --beam 1 is refused, not widened.
                (["--beam", "1", "--lm", missingLM], ["--beam 1", "--lm"]),
                (["--beam", "1", "--hotword", "yes"], ["--beam 1", "--hotword"]),
                (["--lm", missingLM], ["--lm", missingLM]),
                (["--lm", malformedLM.path], ["--lm", malformedLM.path]),
                (["--lm-weight", "nan", "--lm", missingLM], ["--lm-weight nan"]),
                (["--word-bonus", "inf", "--lm", missingLM], ["--word-bonus inf"]),
                // LM weights mean nothing without an LM.
                (["--word-bonus", "2"], ["--word-bonus 2", "--lm"]),
                (["--lm-weight", "0.3"], ["--lm-weight 0.3", "--lm"]),
                (["--jobs", "0"], ["--jobs 0"]),
            ]
            for c in cases {
                let r = try f.run(["transcribe", "--model", f.model.path] + c.args + [audio])
                expectOneLineFailure(r, "transcribe \(c.args)", mentions: c.mentions)
            }
            let manifest = f.dir.appendingPathComponent("one.tsv")
            try writeManifest([(URL(fileURLWithPath: audio), "yes")], to: manifest)
            expectOneLineFailure(try f.run(["eval", "--model", f.model.path, "--jobs", "0", manifest.path]), "eval --jobs 0",
                                 mentions: ["--jobs 0"])
            expectOneLineFailure(try f.run(["bench", "--model", f.model.path, "--hotword", "yes:x", "--audio", audio]),
                                 "bench --hotword yes:x", mentions: ["--hotword", "yes:x"])
            // The same flags, well formed, are accepted.
            let ok = try f.run(["transcribe", "--model", f.model.path, "--hotword", "Yes:2.5", "--hotword", "up down", audio])
            #expect(ok.status == 0, "\(ok.stderr)")
        }
    }

    @Test func evalManifestProblemsFailWithOneLineNamingTheManifest() throws {
        try withFixture { f in
            let missing = f.dir.appendingPathComponent("missing.tsv")
            let malformed = f.dir.appendingPathComponent("malformed.tsv")
            try Data("yes.wav\tyes\nno-tab-on-this-line\n".utf8).write(to: malformed)
            let empty = f.dir.appendingPathComponent("empty.tsv")
            try Data("# only a comment\n\n".utf8).write(to: empty)
            for (what, url, extra) in [("missing", missing, ""), ("malformed", malformed, ":2"), ("empty", empty, "")] {
                let r = try f.run(["eval", "--model", f.model.path, url.path])
                expectOneLineFailure(r, "eval on a \(what) manifest", mentions: [url.path + extra])
            }
            // --hyps into a folder that does not exist is refused before any recognition.
            let hyps = f.dir.appendingPathComponent("no such folder/hyps.tsv").path
            let good = f.dir.appendingPathComponent("good.tsv")
            try writeManifest([(try f.speak(["yes"])[0], "yes")], to: good)
            let r = try f.run(["eval", "--model", f.model.path, "--hyps", hyps, good.path])
            expectOneLineFailure(r, "eval --hyps in a missing folder", mentions: ["--hyps", hyps, "does not exist"])
            // --hyps naming the manifest itself (here through a hard link to it) would replace the references.
            let before = try Data(contentsOf: good)
            let same = f.dir.appendingPathComponent("same.tsv").path
            try FileManager.default.linkItem(atPath: good.path, toPath: same)
            let r2 = try f.run(["eval", "--model", f.model.path, "--hyps", same, good.path])
            expectOneLineFailure(r2, "eval --hyps naming the manifest", mentions: ["--hyps", same, "the manifest being scored"])
            #expect(try Data(contentsOf: good) == before)
        }
    }

    @Test func evalReportsAnUnreadableEntryAndScoresTheRest() throws {
        try withFixture { f in
            let good = try f.speak(["yes", "left"])
            let missing = f.dir.appendingPathComponent("gone.wav")
            let manifest = f.dir.appendingPathComponent("test.tsv")
            try writeManifest([(good[0], "yes"), (missing, "no"), (good[1], "left")], to: manifest)
            let r = try f.run(["eval", "--model", f.model.path, manifest.path])
            #expect(r.status == 1, "an unreadable entry must fail the run: \(r.status)")
            #expect(r.stdout.contains("utterances: 3"), "the rest is still scored:\n\(r.stdout)")
            #expect(r.stdout.contains("WER:"), "\(r.stdout)")
            let named = r.stderrLines.filter { $0.hasPrefix("earshot: ") && $0.contains(missing.path) }
            #expect(named.count == 1, "stderr should name \(missing.lastPathComponent) once:\n\(r.stderr)")
            #expect(r.stderr.contains("1 of 3 audio files could not be read"), "\(r.stderr)")
        }
    }

    @Test func transcribeRefusesAFolderAndAnOutputDirItCannotCreate() throws {
        try withFixture { f in
            let audio = try f.speak(["up"])[0].path
            let folder = f.dir.appendingPathComponent("a folder")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            expectOneLineFailure(try f.run(["transcribe", "--model", f.model.path, folder.path]), "transcribe on a folder",
                                 mentions: [folder.path, "folder"])
            // Among files, a folder is one failure: the files around it are still transcribed.
            let among = try f.run(["transcribe", "--model", f.model.path, audio, folder.path, audio])
            #expect(among.status == 1, "a folder among the inputs must fail the run: \(among.status)")
            #expect(among.stdout.split(separator: "\n").filter { $0.hasPrefix(audio + "\t") }.count == 2, "\(among.stdout)")
            #expect(among.stderrLines.contains { $0.contains(folder.path) && $0.contains("folder") }, "\(among.stderr)")
            #expect(among.stderr.contains("1 of 3 files failed"), "\(among.stderr)")
            // An existing regular file, and a path beneath one: neither can become a folder. (Tests may
            // run as root, for whom permission bits do not stop a write.)
            let file = f.dir.appendingPathComponent("not-a-folder.txt")
            try Data("x".utf8).write(to: file)
            for dir in [file.path, file.appendingPathComponent("sub").path] {
                let r = try f.run(["transcribe", "--model", f.model.path, "--output-dir", dir, audio])
                expectOneLineFailure(r, "--output-dir \(dir)", mentions: ["--output-dir", dir])
            }
        }
    }

    /// A pipe is read to its end before decoding ('-' for standard input, /dev/stdin, a FIFO): the same
    /// transcript as the file. Output that cannot be written (a full disk) is one line and exit 1, not a
    /// crash; an output folder that cannot be written is refused before any work; FILE<TAB>TEXT lines
    /// escape a tab in FILE.
    @Test func transcribeReadsPipesAndReportsOutputItCannotWrite() throws {
        try withFixture { f in
            let audio = try f.speak(["up"])[0].path
            let direct = try f.run(["transcribe", "--model", f.model.path, audio])
            try #require(direct.status == 0 && !direct.stdout.isEmpty, "\(direct.stderr)")
            func sh(_ script: String) throws -> ProcessResult {
                try runProcess("/bin/sh", ["-c", script, "sh", f.earshot, f.model.path, audio], scratch: f.dir, directory: f.dir)
            }
            for script in [#"cat "$3" | "$1" transcribe --model "$2" -"#, #"cat "$3" | "$1" transcribe --model "$2" /dev/stdin"#,
                           #"mkfifo fifo.wav && { cat "$3" > fifo.wav & } && "$1" transcribe --model "$2" fifo.wav"#] {
                let piped = try sh(script)
                #expect(piped.status == 0 && piped.stdout == direct.stdout, "\(script): \(piped.stdout) \(piped.stderr)")
            }
            // The copy of a stream is unlinked at once: a run killed while the stream is still coming in
            // leaves nothing in the temporary folder.
            let tmp = f.dir.appendingPathComponent("tmp")
            try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
            let killed = try runProcess("/bin/sh", ["-c", #"mkfifo slow && { TMPDIR="$4" "$1" transcribe --model "$2" - < slow > /dev/null & pid=$!; { cat "$3"; sleep 3; } > slow & sleep 1; kill $pid; wait $pid; ls -A "$4" | wc -l; }"#,
                                                    "sh", f.earshot, f.model.path, audio, tmp.path], scratch: f.dir, directory: f.dir)
            #expect(killed.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "\(killed.stdout)\(killed.stderr)")
            let out = f.dir.appendingPathComponent("out")
            let named = try sh(#"cat "$3" | "$1" transcribe --model "$2" --output-dir out -"#)
            #expect(named.status == 0, "\(named.stderr)")
            #expect(try String(contentsOf: out.appendingPathComponent("stdin.txt"), encoding: .utf8) == direct.stdout)

            let full = try sh(#""$1" transcribe --model "$2" "$3" > /dev/full"#)
            #expect(full.status == 1, "\(full.stderr)")
            #expect(full.stderrLines == ["earshot: cannot write to standard output: No space left on device"], "\(full.stderr)")
            // Commands that print (through C's buffered stdout) fail the same way.
            let info = try sh(#""$1" model info "$2" > /dev/full"#)
            #expect(info.status == 1, "\(info.stderr)")
            #expect(info.stderrLines == ["earshot: cannot write to standard output: No space left on device"], "\(info.stderr)")

            // A folder it may not write (a read-only bind would do for root; mode 555 stops others).
            if geteuid() != 0 {
                let locked = f.dir.appendingPathComponent("locked")
                try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: true)
                try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: locked.path)
                expectOneLineFailure(try f.run(["transcribe", "--model", f.model.path, "--output-dir", locked.path, audio]),
                                     "--output-dir read-only", mentions: ["--output-dir", "cannot write there"])
            }

            let tabbed = f.dir.appendingPathComponent("a\tb.wav")
            try FileManager.default.copyItem(atPath: audio, toPath: tabbed.path)
            let lines = try f.run(["transcribe", "--model", f.model.path, tabbed.path, audio])
            #expect(lines.stdout.hasPrefix(f.dir.path + "/a\\tb.wav\t"), "\(lines.stdout)")
        }
    }

    /// `eval --score` scores hypotheses written elsewhere, paired by audio path whatever their order; a
    /// reference without one scores as empty and is named; `--trn` writes both sides normalised as eval
    /// scores them, for sclite.
    @Test func evalScoresGivenHypothesesByPathAndWritesTrn() throws {
        try withFixture { f in
            let manifest = f.dir.appendingPathComponent("refs.tsv")
            try Data("a.wav\tDon\u{2019}t stop\nb.wav\t'Yes' he said\nc.wav\thello there\n".utf8).write(to: manifest)
            let given = f.dir.appendingPathComponent("other.tsv")
            try Data("b.wav\tyes he said\na.wav\tdon't go\n".utf8).write(to: given)
            let out = f.dir.appendingPathComponent("trn")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            let r = try f.run(["eval", manifest.path, "--score", given.path, "--trn", out.path])
            #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
            // don't/don't, stop/go: 1 sub; yes he said: 0; hello there: 2 del, over 7 words.
            #expect(r.stdout.contains("WER:        42.86%  (1 sub, 2 del, 0 ins / 7 words)"), "\(r.stdout)")
            #expect(r.stderrLines.count == 1 && r.stderr.contains("no hypothesis for 1 of the manifest's files (first: c.wav)"), "\(r.stderr)")
            #expect(try String(contentsOf: out.appendingPathComponent("ref.trn"), encoding: .utf8)
                    == "don't stop (earshot-000000)\nyes he said (earshot-000001)\nhello there (earshot-000002)\n")
            #expect(try String(contentsOf: out.appendingPathComponent("hyp.trn"), encoding: .utf8)
                    == "don't go (earshot-000000)\nyes he said (earshot-000001)\n (earshot-000002)\n")
            expectOneLineFailure(try f.run(["eval", manifest.path, "--score", given.path, "--hyps", given.path]),
                                 "--score with --hyps", mentions: ["--score", "--hyps"])
            // Absolute paths (as `eval --hyps` writes them for a manifest of absolute paths) pair too;
            // a file given twice, however written, is refused by name.
            let absolute = f.dir.appendingPathComponent("absolute.tsv")
            try Data("\(f.dir.path)/a.wav\tdon't stop\n\(f.dir.path)/b.wav\tyes he said\n\(f.dir.path)/c.wav\thello there\n".utf8).write(to: absolute)
            let all = try f.run(["eval", manifest.path, "--score", absolute.path])
            #expect(all.status == 0 && all.stdout.contains("WER:        0.00%"), "\(all.stdout)\(all.stderr)")
            let twice = f.dir.appendingPathComponent("twice.tsv")
            try Data("\(f.dir.path)/a.wav\tdon't stop\n./a.wav\tdon't go\n".utf8).write(to: twice)
            expectOneLineFailure(try f.run(["eval", manifest.path, "--score", twice.path]), "a path twice", mentions: ["two hypotheses", "a.wav"])
        }
    }

    @Test func modelInfoOnAForeignSafetensorsFileSaysItIsNotAnEarshotModel() throws {
        try withFixture { f in
            // A well-formed safetensors file (one F32 tensor) without Earshot's metadata.
            let header = #"{"weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
            var bytes = Data()
            withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(Data(header.utf8))
            bytes.append(Data(count: 8))
            let foreign = f.dir.appendingPathComponent("foreign.safetensors")
            try bytes.write(to: foreign)
            expectOneLineFailure(try f.run(["model", "info", foreign.path]), "model info on a foreign file",
                                 mentions: [foreign.path, "not an Earshot model"])
            expectOneLineFailure(try f.run(["transcribe", "--model", foreign.path, try f.speak(["no"])[0].path]),
                                 "transcribe with a foreign model", mentions: [foreign.path])
        }
    }

    /// An output that is one of the inputs under another spelling (./, a link) is refused before anything
    /// is read or written: the string comparison let `--out ./s3` replace snapshot s3.
    @Test func anOutputThatIsAnInputUnderAnotherNameIsRefused() throws {
        try withFixture { f in
            let model = f.model.path
            let link = f.dir.appendingPathComponent("link.safetensors").path
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: model)
            let before = try Data(contentsOf: f.model)
            // Usage errors (ArgumentParser's validation): status 64, the reason, then the usage.
            func expectRefused(_ arguments: [String], _ reason: String) throws {
                let r = try f.run(arguments)
                #expect(r.status == 64 && r.stderr.contains(reason), "\(arguments.joined(separator: " ")): \(r.status) \(r.stderr)")
            }
            for out in [link, f.model.deletingLastPathComponent().path + "/./" + f.model.lastPathComponent] {
                try expectRefused(["model", "average", "--out", out, model, model], "--out \(out) is one of the inputs")
                try expectRefused(["model", "deepen", "--blocks", "2", "--out", out, model], "--out \(out) is the input")
            }
            #expect(try Data(contentsOf: f.model) == before)
            let arpa = f.dir.appendingPathComponent("tiny.arpa").path
            try Data("\\data\\\nngram 1=3\n\n\\1-grams:\n-1 <s>\n-0.5 yes\n-1 </s>\n\n\\end\\\n".utf8).write(to: URL(fileURLWithPath: arpa))
            let arpaLink = f.dir.appendingPathComponent("tiny-link.arpa").path
            try FileManager.default.createSymbolicLink(atPath: arpaLink, withDestinationPath: arpa)
            try expectRefused(["lm", "compile", arpaLink, "--out", arpa], "--out \(arpa) is the input")
        }
    }

    /// Hotwords alone switch to beam search: bench must report what the recogniser runs.
    @Test func benchNamesTheDecodingItRuns() throws {
        try withFixture { f in
            let audio = try f.speak(["down"])[0].path
            for (args, expected) in [([String](), "greedy"), (["--hotword", "down"], "beam search, width \(DecodingSettings.defaultSearchBeam) (1 hotword)"),
                                     (["--beam", "4"], "beam search, width 4")] {
                let r = try f.run(["bench", "--model", f.model.path, "--audio", audio] + args)
                #expect(r.status == 0, "\(r.stderr)")
                #expect(lines(r.stdout).contains("decoding:    \(expected)"), "bench \(args):\n\(r.stdout)")
            }
        }
    }

    /// Values that parse but would trap or misbehave deep in training are refused up front, one line
    /// naming the key as written in the file, and no run folder is created.
    @Test func trainRejectsOutOfRangeValuesNamingTheKey() throws {
        let earshot = try earshotExecutable()
        try withTemporaryDirectory { dir in
            let cases: [(toml: String, key: String)] = [
                ("[run]\nlog_every_steps = 0", "run.log_every_steps"),
                ("[run]\nvalid_every_steps = 0", "run.valid_every_steps"),
                ("[run]\nthreads = 0", "run.threads"),
                ("[run]\ncheckpoint_minutes = 0", "run.checkpoint_minutes"),
                ("[run]\nseed = -1", "run.seed"),
                ("[run]\nthreads = \"two\"", "run.threads"),
                // A fraction where an integer belongs: the JSON decoder's own error names no key.
                ("[optimizer]\ntotal_steps = 3.5", "'optimizer.total_steps' (3.5 given) must be an integer"),
                ("[model]\nblocks = 1.5", "'model.blocks' (1.5 given) must be an integer"),
                ("[augment]\nspeed_range = [1.1, 0.9]", "augment.speed_range"),
                ("[augment]\nsnr_range = [30, 5]", "augment.snr_range"),
                ("[augment]\nsnr_range = [5]", "augment.snr_range"),
                ("[augment]\nsnr_range = [5, \"x\"]", "augment.snr_range[1]"),
                ("[augment]\nmax_time_width = -1", "augment.max_time_width"),
                ("[augment]\nmax_time_proportion = 1.5", "augment.max_time_proportion"),
                ("[augment]\nspeed_probability = -0.1", "augment.speed_probability"),
                ("[model]\nkernel = 1", "model.kernel"),
                ("[model]\nchannels = 0", "model.channels"),
                ("[model]\nlook_ahead_blocks = -1", "model.look_ahead_blocks"),
                ("[model]\nsubsampling = 3", "model.subsampling"),
                ("[augment]\nwarp_probability = 1.5", "augment.warp_probability"),
                ("[augment]\nwarp_range = [0.3, 1.1]", "augment.warp_range"),
                ("[augment]\nwarp_range = [1.1, 0.9]", "augment.warp_range"),
                ("[augment]\neq_probability = 2", "augment.eq_probability"),
                ("[augment]\neq_decibels = 40", "augment.eq_decibels"),
                ("[augment]\ntrim_probability = -0.1", "augment.trim_probability"),
                ("[augment]\ntrim_margin = 2", "augment.trim_margin"),
                ("[data]\nstatistics_utterances = 0", "data.statistics_utterances"),
                ("[data]\nmax_seconds = 0.1", "data.max_seconds"),
                ("[optimizer]\nlearning_rate = -1", "optimizer.learning_rate"),
                ("[optimizer]\ntotal_steps = 0", "optimizer.total_steps"),
                ("[optimizer]\ndecay = \"linear\"", "optimizer.decay"),
                ("[loss]\nintermediate_weight = 1", "loss.intermediate_weight"),
                ("[loss]\nintermediate_weight = 0.3\nintermediate_block = -1", "loss.intermediate_block"),
                // The default model has 10 blocks: the head cannot read past the last.
                ("[loss]\nintermediate_weight = 0.3\nintermediate_block = 10", "loss.intermediate_block"),
                // TOML's nan and inf, which no setting takes.
                ("[optimizer]\nlearning_rate = nan", "optimizer.learning_rate = nan"),
                ("[augment]\nsnr_range = [5.0, inf]", "augment.snr_range[1] = inf"),
                ("[run]\ncheckpoint_minutes = -inf", "run.checkpoint_minutes = -inf"),
            ]
            for (i, c) in cases.enumerated() {
                let work = dir.appendingPathComponent("case\(i)")
                try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
                let config = work.appendingPathComponent("train.toml")
                let text = c.toml.hasPrefix("[data]") ? c.toml.replacingOccurrences(of: "[data]", with: "[data]\ntrain = \"train.tsv\"")
                    : "[data]\ntrain = \"train.tsv\"\n\n" + c.toml
                try Data((text + "\n").utf8).write(to: config)
                let r = try runProcess(earshot, ["train", "--config", config.path], scratch: work, directory: work)
                #expect(r.status == 1, "\(c.toml): exit status \(r.status)")
                let errorLines = r.stderrLines
                #expect(errorLines.count == 1 && errorLines[0].hasPrefix("earshot: \(config.path): ")
                        && errorLines[0].contains(c.key) && !errorLines[0].contains("DecodingError"),
                        "\(c.toml): expected one line naming \(config.path) and \(c.key), got:\n\(r.stderr)")
                #expect(try FileManager.default.contentsOfDirectory(atPath: work.path).filter { !$0.hasPrefix(".") } == ["train.toml"],
                        "\(c.toml): a run folder was created")
            }
        }
    }

    /// A manifest or init model that is not there is named by its key before any run folder is made.
    @Test func trainNamesAMissingFileBeforeCreatingTheRunFolder() throws {
        let earshot = try earshotExecutable()
        try withTemporaryDirectory { dir in
            try Data("missing.wav\tyes\n".utf8).write(to: dir.appendingPathComponent("train.tsv"))
            let cases: [(toml: String, key: String)] = [
                ("[data]\ntrain = \"nosuch.tsv\"", "data.train 'nosuch.tsv'"),
                ("[data]\ntrain = \"train.tsv\"\nvalid = \"nosuch.tsv\"", "data.valid 'nosuch.tsv'"),
                ("[data]\ntrain = \"train.tsv\"\n\n[model]\ninit_from = \"nosuch.safetensors\"", "model.init_from 'nosuch.safetensors'"),
            ]
            for (i, c) in cases.enumerated() {
                let config = dir.appendingPathComponent("train\(i).toml")
                try Data((c.toml + "\n\n[run]\noutput = \"run\(i)\"\n").utf8).write(to: config)
                let r = try runProcess(earshot, ["train", "--config", config.path], scratch: dir, directory: dir)
                #expect(r.status == 1 && r.stderrLines.count == 1 && r.stderr.contains(c.key) && r.stderr.contains("no such file"),
                        "\(c.toml): \(r.stderr)")
                #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("run\(i)").path), "\(c.toml): a run folder was created")
            }
        }
    }

    /// One run per folder (a second would overwrite the first's checkpoints and interleave its log), and
    /// a folder given where a manifest belongs is named as such.
    @Test func trainRefusesARunFolderInUseAndAFolderAsManifest() throws {
        let earshot = try earshotExecutable()
        try withTemporaryDirectory { dir in
            try Data("missing.wav\tyes\n".utf8).write(to: dir.appendingPathComponent("train.tsv"))
            let config = dir.appendingPathComponent("train.toml")
            try Data("[data]\ntrain = \"train.tsv\"\n\n[run]\noutput = \"run\"\n".utf8).write(to: config)
            let run = dir.appendingPathComponent("run")
            try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
            let held = open(run.appendingPathComponent(".lock").path, O_RDWR | O_CREAT, 0o644)
            try #require(held >= 0 && flock(held, LOCK_EX | LOCK_NB) == 0)
            let busy = try runProcess(earshot, ["train", "--config", config.path], scratch: dir, directory: dir)
            #expect(busy.status == 1 && busy.stderrLines.count == 1 && busy.stderr.contains("another earshot train is using this run folder"), "\(busy.stderr)")
            #expect(!FileManager.default.fileExists(atPath: run.appendingPathComponent("train.log").path))
            close(held)
            let free = try runProcess(earshot, ["train", "--config", config.path], scratch: dir, directory: dir)
            #expect(free.stderr.contains("no usable utterances"), "\(free.stderr)")

            try FileManager.default.createDirectory(at: dir.appendingPathComponent("corpus"), withIntermediateDirectories: true)
            try Data("[data]\ntrain = \"corpus\"\n\n[run]\noutput = \"run2\"\n".utf8).write(to: config)
            let folder = try runProcess(earshot, ["train", "--config", config.path], scratch: dir, directory: dir)
            #expect(folder.status == 1 && folder.stderr.contains("data.train 'corpus' is a folder"), "\(folder.stderr)")
            let zero = try runProcess(earshot, ["train", "--config", config.path, "--steps", "0"], scratch: dir, directory: dir)
            #expect(zero.status == 1 && zero.stderrLines == ["earshot: --steps 0: must be at least 1"], "\(zero.stderr)")
        }
    }

    /// `run.output = "~/..."` is one folder for the log and the trainer: $HOME's, not a './~' folder.
    @Test func trainExpandsTildeInRunOutputOnce() throws {
        let earshot = try earshotExecutable()
        try withTemporaryDirectory { dir in
            let home = dir.appendingPathComponent("home"), work = dir.appendingPathComponent("work")
            for d in [home, work] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
            let config = work.appendingPathComponent("train.toml")
            // The manifest names only missing audio, so the trainer stops after the run folder and its log exist.
            try Data("missing.wav\tyes\n".utf8).write(to: work.appendingPathComponent("train.tsv"))
            try Data("[data]\ntrain = \"train.tsv\"\n\n[run]\noutput = \"~/runs/tilde\"\n".utf8).write(to: config)
            let r = try runProcess(earshot, ["train", "--config", config.path], scratch: work, directory: work,
                                   environment: ["HOME": home.path])
            #expect(r.status == 1)
            #expect(r.stderr.contains("no usable utterances"), "\(r.stderr)")
            // The skipped file is named, with the reason.
            #expect(r.stderr.contains("skipped 1 utterance: unreadable audio (the first: ") && r.stderr.contains("missing.wav"), "\(r.stderr)")
            let log = home.appendingPathComponent("runs/tilde/train.log")
            #expect(FileManager.default.fileExists(atPath: log.path), "no train.log in $HOME/runs/tilde")
            #expect(!FileManager.default.fileExists(atPath: work.appendingPathComponent("~").path), "a literal '~' folder was created")
        }
    }
}
