import Audio
import Foundation
import Model
import Tensors
import Testing
import TestSupport
import Training

@Suite struct TrainingResumeTests {
    /// A small run with every augmentation on: the tiny recipe shrunk (32 channels, 1 block, short
    /// batches, 20 ms frames) with speed perturbation, noise, frequency warping and SpecAugment each
    /// drawn for about half the utterances, so the check covers their random streams.
    static func config(manifest: URL, output: URL, steps: Int) -> TrainConfig {
        var c = TinyModel.config(manifest: manifest, output: output, seed: 5)
        c.model.channels = 32
        c.model.blocks = 1
        c.model.hidden = 32
        c.optimizer.warmupSteps = 2
        c.optimizer.totalSteps = steps
        c.optimizer.batchSeconds = 2.5
        c.augment.speedProbability = 0.5
        c.augment.speedRange = [0.85, 1.15]
        c.augment.noiseProbability = 0.5
        c.augment.snrRange = [5, 20]
        c.augment.frequencyMasks = 2
        c.augment.maxFrequencyWidth = 8
        c.augment.timeMasks = 2
        c.augment.maxTimeWidth = 5
        c.augment.warpProbability = 0.5
        c.augment.warpRange = [0.85, 1.15]
        c.augment.eqProbability = 0.5
        c.augment.eqDecibels = 6
        c.augment.trimProbability = 0.5
        c.model.subsampling = 2
        c.run.logEverySteps = 1000
        return c
    }

    /// N steps straight equal N/2 steps, a stop (checkpoint), a new Trainer resuming from the run
    /// folder, and N/2 more: bit for bit, which needs the batch order, every augmentation draw, the
    /// optimiser moments and the schedule position to survive the checkpoint. The run spans several
    /// epochs, and the stop falls mid-epoch.
    @Test func trainingResumesExactly() throws {
        trainingLock.lock()
        defer { trainingLock.unlock() }
        try withTemporaryDirectory { dir in
            let words = ["yes", "no", "up", "down", "left", "right"]
            let renderings = words.flatMap { w in ["en-us", "en-029"].map { Rendering(text: w, voice: $0, speed: 160) } }
            let files = try synthesize(renderings, into: dir)
            let manifest = dir.appendingPathComponent("train.tsv")
            try writeManifest(zip(files, renderings).map { ($0, $1.text) }, to: manifest)
            let steps = 10, half = steps / 2
            var epochs = 0

            let straight = try Trainer(config: Self.config(manifest: manifest, output: dir.appendingPathComponent("straight"), steps: steps),
                                       log: { _ in })
            let initial = straight.currentParameters
            try straight.run(shouldStop: { false }, progress: { epochs = $0.epoch })
            #expect(straight.step == steps)

            let splitConfig = Self.config(manifest: manifest, output: dir.appendingPathComponent("split"), steps: steps)
            let first = try Trainer(config: splitConfig, log: { _ in })
            #expect(first.currentParameters == initial, "the same seed must give the same initial weights")
            try first.run(shouldStop: { first.step >= half }, progress: { _ in })
            #expect(first.step == half)
            let halfway = first.currentParameters

            var resumedLog: [String] = []
            let second = try Trainer(config: splitConfig, log: { resumedLog.append($0) })
            #expect(second.step == half, "a new Trainer in the same run folder must resume from its checkpoint")
            #expect(resumedLog.contains { $0.contains("resumed") })
            try second.run(shouldStop: { false }, progress: { _ in })
            #expect(second.step == steps)

            let a = straight.currentParameters, b = second.currentParameters
            #expect(a.keys.sorted() == b.keys.sorted())
            var differing: [String] = []
            for (name, t) in a {
                guard let u = b[name], u.shape == t.shape,
                      zip(t.data, u.data).allSatisfy({ $0.bitPattern == $1.bitPattern }) else { differing.append(name); continue }
            }
            #expect(differing.isEmpty, "parameters differ after resuming: \(differing.sorted())")
            // The comparison must have teeth: the second half changed every tensor, and the run saw epochs turn over.
            let unchanged = halfway.filter { name, t in a[name]?.data == t.data }.keys
            #expect(unchanged.isEmpty, "tensors the second half did not change: \(unchanged.sorted())")
            #expect(epochs >= 3, "the run should span several epochs, saw \(epochs)")
        }
    }

    /// "yes" and "no" in one voice, and their manifest: the smallest training set.
    static func yesNoManifest(in dir: URL) throws -> URL {
        let renderings = ["yes", "no"].map { Rendering(text: $0, voice: "en-us", speed: 160) }
        let files = try synthesize(renderings, into: dir)
        let manifest = dir.appendingPathComponent("train.tsv")
        try writeManifest(zip(files, renderings).map { ($0, $1.text) }, to: manifest)
        return manifest
    }

    /// `run.snapshot_every_steps` keeps a plain model at each multiple of it, named by its step.
    @Test func snapshotsAreKeptEveryNSteps() throws {
        trainingLock.lock()
        defer { trainingLock.unlock() }
        try withTemporaryDirectory { dir in
            let manifest = try Self.yesNoManifest(in: dir)
            var config = Self.config(manifest: manifest, output: dir.appendingPathComponent("run"), steps: 7)
            config.run.snapshotEverySteps = 3
            let trainer = try Trainer(config: config, log: { _ in })
            try trainer.run(shouldStop: { false }, progress: { _ in })
            let folder = dir.appendingPathComponent("run/snapshots")
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
                    == ["step-00000003.safetensors", "step-00000006.safetensors"])
            let six = try ModelFile.load(path: trainer.snapshotURL(step: 6).path)
            let three = try ModelFile.load(path: trainer.snapshotURL(step: 3).path)
            #expect(six.description.provenance["steps"] == .string("6"))
            #expect(six.parameters != three.parameters)
        }
    }

    /// With `loss.intermediate_weight` the trainer optimises the mixed objective: the same run from the
    /// same seed reports another loss and reaches other weights than the plain run, and says so in its log.
    /// (The objective's gradients are checked against a Double reference in IntermediateCTCTests.)
    @Test func intermediateCTCChangesTheObjective() throws {
        trainingLock.lock()
        defer { trainingLock.unlock() }
        try withTemporaryDirectory { dir in
            let manifest = try Self.yesNoManifest(in: dir)
            func run(_ name: String, weight: Float) throws -> (loss: Double, parameters: [String: Tensor], log: [String]) {
                var config = Self.config(manifest: manifest, output: dir.appendingPathComponent(name), steps: 3)
                config.model.blocks = 2
                config.loss.intermediateWeight = weight
                let lines = Locked<[String]>([])
                let trainer = try Trainer(config: config, log: { line in lines.withLock { $0.append(line) } })
                var loss = 0.0
                try trainer.run(shouldStop: { false }, progress: { loss = $0.loss })
                return (loss, trainer.currentParameters, lines.current)
            }
            let plain = try run("plain", weight: 0)
            let mixed = try run("mixed", weight: 0.3)
            #expect(plain.loss.isFinite && mixed.loss.isFinite && plain.loss != mixed.loss)
            #expect(plain.parameters.keys == mixed.parameters.keys && plain.parameters != mixed.parameters)
            #expect(mixed.log.contains("intermediate CTC: the head also reads block 1's output, weight 0.3"), "\(mixed.log)")
            #expect(!plain.log.contains { $0.hasPrefix("intermediate CTC") })
            let exported = try ModelFile.load(path: dir.appendingPathComponent("mixed/last.safetensors").path)
            #expect(exported.description.provenance["intermediate_ctc"] == .string("block 1, weight 0.3"))
        }
    }

    /// Each report estimates the time left from the steps since the previous one: none at the last
    /// step, some before it; the log line says it.
    @Test func reportsSayHowLongTheRunHasLeft() throws {
        trainingLock.lock()
        defer { trainingLock.unlock() }
        try withTemporaryDirectory { dir in
            let manifest = try Self.yesNoManifest(in: dir)
            var config = Self.config(manifest: manifest, output: dir.appendingPathComponent("run"), steps: 4)
            config.run.logEverySteps = 2
            let lines = Locked<[String]>([])
            let trainer = try Trainer(config: config, log: { line in lines.withLock { $0.append(line) } })
            var reports: [TrainProgress] = []
            try trainer.run(shouldStop: { false }, progress: { reports.append($0) })
            // Every step reports (a terminal's bar), over the log window so far.
            #expect(reports.map(\.step) == [1, 2, 3, 4])
            #expect(reports[1].secondsLeft > 0 && reports[3].secondsLeft == 0)
            let stepLines = lines.current.filter { $0.hasPrefix("step ") }
            #expect(stepLines.count == 2 && stepLines[1].hasSuffix("real time, 0h00m left"), "\(stepLines)")
        }
    }

    /// A diverged run (here a learning rate of 1e37: after one step the weights are finite, 1e37, but the output overflows)
    /// stops at `nonFiniteBatchLimit` skipped batches in a row, counted across a stop and a resume: the
    /// count is in the checkpoint, so resuming does not grant the run another 20.
    @Test func divergenceIsCaughtAcrossAResume() throws {
        trainingLock.lock()
        defer { trainingLock.unlock() }
        try withTemporaryDirectory { dir in
            let manifest = try Self.yesNoManifest(in: dir)
            var config = Self.config(manifest: manifest, output: dir.appendingPathComponent("run"), steps: 100)
            config.optimizer.learningRate = 1e37
            var skipped = 0
            let log: (String) -> Void = { if $0.hasPrefix("skipped a batch") { skipped += 1 } }
            let first = try Trainer(config: config, log: log)
            try first.run(shouldStop: { skipped >= 12 }, progress: { _ in })
            try #require(skipped == 12, "the run should have diverged")
            let stepAtStop = first.step
            skipped = 0
            let second = try Trainer(config: config, log: log)
            #expect(second.step == stepAtStop)
            do {
                try second.run(shouldStop: { false }, progress: { _ in })
                Issue.record("a diverged run trained on")
            } catch let TrainerError.data(reason) {
                #expect(reason.contains("\(Trainer.nonFiniteBatchLimit) batches in a row gave a non-finite output or gradients"), "\(reason)")
            }
            #expect(skipped == Trainer.nonFiniteBatchLimit - 12)
        }
    }

    /// A checkpoint whose AdamW moments do not fit its parameters (doctored here; in life, moments
    /// copied from another model) is refused when the run resumes, naming the checkpoint and the
    /// tensor, instead of the optimiser indexing past the moments' end at the first step.
    @Test func resumeRefusesOptimizerMomentsThatDoNotFitTheParameters() throws {
        trainingLock.lock()
        defer { trainingLock.unlock() }
        try withTemporaryDirectory { dir in
            let manifest = try Self.yesNoManifest(in: dir)
            var config = Self.config(manifest: manifest, output: dir.appendingPathComponent("run"), steps: 1)
            config.model.channels = 8
            config.model.hidden = 8
            let trainer = try Trainer(config: config, log: { _ in })
            try trainer.run(shouldStop: { false }, progress: { _ in })
            let checkpoint = trainer.checkpointURL.path

            // Intact, it resumes.
            #expect(try Trainer(config: config, log: { _ in }).step == 1)
            // An edited [model] would be ignored (the checkpoint's architecture trains on): refused.
            var wider = config
            wider.model.channels = 16
            do {
                _ = try Trainer(config: wider, log: { _ in })
                Issue.record("a [model] that differs from the checkpoint's architecture was accepted")
            } catch let TrainerError.config(reason) {
                #expect(reason.contains("[model] differs from the architecture of the run being resumed"), "\(reason)")
            }

            var model = try ModelFile.load(path: checkpoint)
            let name = "head.output.weight"
            // A moment that is not a number (saved as the run diverged) is refused too.
            let original = try #require(model.parameters["adamw.m.\(name)"])
            var poisoned = original
            poisoned.data[0] = .nan
            model.parameters["adamw.m.\(name)"] = poisoned
            try model.save(path: checkpoint)
            do {
                _ = try Trainer(config: config, log: { _ in })
                Issue.record("a checkpoint with a NaN moment was accepted")
            } catch let TrainerError.checkpoint(path, reason) {
                #expect(path == checkpoint && reason.contains("'\(name)'") && reason.contains("not a finite number"), "\(reason)")
            }
            model.parameters["adamw.m.\(name)"] = original
            let short = Tensor(shape: [3], data: [0, 0, 0])
            try #require(model.parameters["adamw.m.\(name)"] != nil, "the checkpoint should hold AdamW moments")
            model.parameters["adamw.m.\(name)"] = short
            model.parameters["adamw.v.\(name)"] = short
            try model.save(path: checkpoint)
            do {
                _ = try Trainer(config: config, log: { _ in })
                Issue.record("a checkpoint with mis-sized moments was accepted")
            } catch let TrainerError.checkpoint(path, reason) {
                #expect(path == checkpoint)
                #expect(reason.contains("'\(name)'"), "\(reason)")
            }
        }
    }

    /// Five spoken words as a training set, and a tiny run's configuration on them.
    static func fiveWords(in dir: URL, steps: Int) throws -> (files: [URL], manifest: URL, config: TrainConfig) {
        let renderings = ["yes", "no", "up", "down", "left"].map { Rendering(text: $0, voice: "en-us", speed: 160) }
        let files = try synthesize(renderings, into: dir)
        let manifest = dir.appendingPathComponent("train.tsv")
        try writeManifest(zip(files, renderings).map { ($0, $1.text) }, to: manifest)
        var config = Self.config(manifest: manifest, output: dir.appendingPathComponent("run"), steps: steps)
        config.model.channels = 8
        config.model.hidden = 8
        return (files, manifest, config)
    }

    /// Loading reads only headers; audio that then fails to decode (here: gone after loading) is left
    /// out of its batches and named once in the log, and training goes on past it.
    @Test func trainingSkipsAnUtteranceWhoseAudioCannotBeDecoded() throws {
        try withTemporaryDirectory { dir in
            let (files, _, config) = try Self.fiveWords(in: dir, steps: 4)
            let log = Locked<[String]>([])
            let trainer = try Trainer(config: config, log: { line in log.withLock { $0.append(line) } })
            try FileManager.default.removeItem(at: files[2])
            try trainer.run(shouldStop: { false }, progress: { _ in })
            let lines = log.withLock { $0 }.filter { $0.hasPrefix("skipped in training:") }
            #expect(lines.count == 1 && lines.first?.contains(files[2].lastPathComponent) == true, "\(log.withLock { $0 })")
            let saved = try ModelFile.load(path: dir.appendingPathComponent("run/last.safetensors").path)
            #expect(saved.description.provenance["steps"] == .string("4"))
        }
    }

    /// With no audio left to decode at all (the corpus gone since loading), the run stops with an error
    /// after one epoch of trying, instead of cycling through epochs for ever. Nothing was trained, so no
    /// checkpoint is written: the folder stays a fresh run's, where a corrected config is still read
    /// (`earshot train` keeps a checkpoint when a step was trained).
    @Test func trainingStopsWhenNoAudioCanBeDecoded() throws {
        try withTemporaryDirectory { dir in
            let (files, _, config) = try Self.fiveWords(in: dir, steps: 4)
            let trainer = try Trainer(config: config, log: { _ in })
            for file in files { try FileManager.default.removeItem(at: file) }
            #expect {
                try trainer.run(shouldStop: { false }, progress: { _ in })
            } throws: { error in
                "\(error)".contains("none of the training audio could be decoded")
            }
            #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("run/checkpoint.safetensors").path))
        }
    }

    /// Validation audio that cannot be read (gone since the run started) still counts as an empty
    /// hypothesis, so WERs stay comparable, but the log says how many and which.
    @Test func validationLogsUtterancesItCannotRead() throws {
        try withTemporaryDirectory { dir in
            let (files, manifest, tiny) = try Self.fiveWords(in: dir, steps: 1)
            var config = tiny
            config.data.valid = manifest.path
            let log = Locked<[String]>([])
            let trainer = try Trainer(config: config, log: { line in log.withLock { $0.append(line) } })
            for gone in [files[1], files[3]] { try FileManager.default.removeItem(at: gone) }
            let score = try trainer.validate()
            #expect(score.utterances == files.count, "unreadable utterances still count")
            let lines = log.withLock { $0 }.filter { $0.contains("could not be read") }
            #expect(lines.count == 1, "\(log.withLock { $0 })")
            if let line = lines.first {
                #expect(line.contains("2 of 5"), "\(line)")
                #expect(line.contains(files[1].lastPathComponent) && line.contains(files[3].lastPathComponent), "\(line)")
            }
        }
    }

    /// Feature statistics decode a sample of the training files before the first step. One whose
    /// header loads but whose audio does not decode (a NaN in a float WAV) is left out there, named in
    /// the log, as training leaves it out of its batches, instead of stopping the run before it starts.
    @Test func statisticsLeaveOutAFileThatCannotBeDecoded() throws {
        try withTemporaryDirectory { dir in
            let (files, _, config) = try Self.fiveWords(in: dir, steps: 2)
            var samples = try AudioFile.read(path: files[2].path).samples
            samples[samples.count / 2] = .nan
            try AudioWriter.write(samples, sampleRate: 16000, to: files[2].path, format: .wavFloat)
            let log = Locked<[String]>([])
            let trainer = try Trainer(config: config, log: { line in log.withLock { $0.append(line) } })
            let lines = log.withLock { $0 }.filter { $0.hasPrefix("feature statistics: left out 1 unreadable file of 5") }
            #expect(lines.count == 1 && lines.first?.contains(files[2].lastPathComponent) == true, "\(log.withLock { $0 })")
            try trainer.run(shouldStop: { false }, progress: { _ in })
            #expect(trainer.step == 2)
        }
    }

    /// The last step is validated even when it is not a multiple of valid_every_steps: the run's final
    /// figure is in the log (and best.safetensors considers the last model).
    @Test func aRunValidatesAtItsLastStep() throws {
        try withTemporaryDirectory { dir in
            let (_, manifest, tiny) = try Self.fiveWords(in: dir, steps: 3)
            var config = tiny
            config.data.valid = manifest.path
            config.run.validEverySteps = 2
            let log = Locked<[String]>([])
            let trainer = try Trainer(config: config, log: { line in log.withLock { $0.append(line) } })
            try trainer.run(shouldStop: { false }, progress: { _ in })
            let steps = log.withLock { $0 }.filter { $0.hasPrefix("validation at step") }.map { $0.split(separator: ":")[0] }
            #expect(steps == ["validation at step 2", "validation at step 3"], "\(log.withLock { $0 })")
        }
    }

    /// A model whose output rows are not Earshot's alphabet in Earshot's order cannot be trained on from
    /// model.init_from: its rows would learn labels that mean other letters. Refused, naming the file.
    @Test func initFromAModelWithAnotherVocabularyIsRefused() throws {
        try withTemporaryDirectory { dir in
            let (_, _, config) = try Self.fiveWords(in: dir, steps: 1)
            try Trainer(config: config, log: { _ in }).run(shouldStop: { false }, progress: { _ in })
            var model = try ModelFile.load(path: dir.appendingPathComponent("run/last.safetensors").path)
            let a = try #require(model.description.vocabulary.firstIndex(of: "a"))
            let b = try #require(model.description.vocabulary.firstIndex(of: "b"))
            model.description.vocabulary.swapAt(a, b)
            let other = dir.appendingPathComponent("other.safetensors").path
            try model.save(path: other)
            var next = config
            next.model.initFrom = other
            next.run.output = dir.appendingPathComponent("run2").path
            #expect {
                _ = try Trainer(config: next, log: { _ in })
            } throws: { error in
                "\(error)".contains("model.init_from '\(other)'") && "\(error)".contains("output vocabulary")
            }
        }
    }

    /// A config naming model.init_from over a folder that holds another run (started at random) is a
    /// new run meant: resuming that one would train the wrong model without a word. Refused; the same
    /// init_from the run began with (even by another path) resumes, another model is refused.
    @Test func resumingARunThatBeganFromSomethingElseIsRefused() throws {
        try withTemporaryDirectory { dir in
            let (_, _, config) = try Self.fiveWords(in: dir, steps: 1)
            try Trainer(config: config, log: { _ in }).run(shouldStop: { false }, progress: { _ in })
            let base = dir.appendingPathComponent("base.safetensors")
            try FileManager.default.copyItem(at: dir.appendingPathComponent("run/last.safetensors"), to: base)
            var fromBase = config
            fromBase.model.initFrom = base.path
            #expect {
                _ = try Trainer(config: fromBase, log: { _ in })
            } throws: { error in
                "\(error)".contains("model.init_from is '\(base.path)'") && "\(error)".contains("random, seed 5")
            }
            // A run that began from base resumes with base named another way, and refuses another model.
            fromBase.run.output = dir.appendingPathComponent("run2").path
            fromBase.optimizer.totalSteps = 1
            try Trainer(config: fromBase, log: { _ in }).run(shouldStop: { false }, progress: { _ in })
            let link = dir.appendingPathComponent("link.safetensors")
            try FileManager.default.createSymbolicLink(at: link, withDestinationURL: base)
            var again = fromBase
            again.model.initFrom = link.path
            again.optimizer.totalSteps = 2
            _ = try Trainer(config: again, log: { _ in })
            let other = dir.appendingPathComponent("other.safetensors")
            try FileManager.default.copyItem(at: dir.appendingPathComponent("run2/last.safetensors"), to: other)
            again.model.initFrom = other.path
            #expect {
                _ = try Trainer(config: again, log: { _ in })
            } throws: { error in
                "\(error)".contains("began from \(base.path)")
            }
        }
    }

    /// A resumed run whose settings changed says which, since it no longer continues as it began.
    @Test func resumingWithChangedSettingsSaysWhichChanged() throws {
        try withTemporaryDirectory { dir in
            let (_, _, config) = try Self.fiveWords(in: dir, steps: 1)
            try Trainer(config: config, log: { _ in }).run(shouldStop: { false }, progress: { _ in })
            var changed = config
            changed.optimizer.totalSteps = 3
            changed.optimizer.batchSeconds = 2.0
            changed.run.checkpointMinutes = 1  // where and how often it writes: not a change of course
            let log = Locked<[String]>([])
            _ = try Trainer(config: changed, log: { line in log.withLock { $0.append(line) } })
            let warnings = log.withLock { $0 }.filter { $0.hasPrefix("warning:") && $0.contains("the checkpoint's run used") }
            #expect(warnings.count == 2, "\(warnings)")
            #expect(warnings.contains { $0.hasPrefix("warning: optimizer.batch_seconds is 2, the checkpoint's run used 2.5") }, "\(warnings)")
            #expect(warnings.contains { $0.hasPrefix("warning: optimizer.total_steps is 3, the checkpoint's run used 1") && $0.contains("stretched") }, "\(warnings)")
            let quiet = Locked<[String]>([])
            _ = try Trainer(config: config, log: { line in quiet.withLock { $0.append(line) } })
            #expect(!quiet.withLock { $0 }.contains { $0.contains("the checkpoint's run used") }, "\(quiet.withLock { $0 })")
        }
    }

    /// `earshot train 2>&1 | tee run.txt` stopped by Ctrl-C loses tee too: the stop message and every
    /// later line then go to a closed pipe. And closing the terminal (SIGHUP) stops a run as Ctrl-C
    /// does. Either way the run must still save its checkpoint and exit cleanly (it died of SIGPIPE, or
    /// of SIGHUP, losing up to checkpoint_minutes of training).
    @Test(arguments: [SIGINT, SIGHUP])
    func trainingStoppedWithItsStderrClosedStillSavesItsCheckpoint(signal sig: Int32) throws {
        var inherited = sigaction()
        if sig == SIGHUP, sigaction(SIGHUP, nil, &inherited) == 0,
           unsafeBitCast(inherited.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) {
            return  // started under nohup: the child inherits the ignored SIGHUP, and earshot train keeps it so
        }
        let earshot = try earshotExecutable()
        try withTemporaryDirectory { dir in
            _ = try Self.fiveWords(in: dir, steps: 1)
            let toml = """
                [data]
                train = "train.tsv"

                [model]
                channels = 8
                hidden = 8
                blocks = 1

                [optimizer]
                total_steps = 1000000
                batch_seconds = 2.5

                [run]
                output = "run"
                log_every_steps = 1
                checkpoint_minutes = 600.0
                """
            try Data(toml.utf8).write(to: dir.appendingPathComponent("train.toml"))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: earshot)
            process.arguments = ["train", "--config", "train.toml"]
            process.currentDirectoryURL = dir
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            let pipe = Pipe()
            process.standardError = pipe
            try process.run()
            // Nobody reads standard error any more.
            try pipe.fileHandleForReading.close()
            try pipe.fileHandleForWriting.close()
            let logURL = dir.appendingPathComponent("run/train.log")
            let deadline = Date().addingTimeInterval(120)
            func logged(_ text: String) -> Bool { ((try? String(contentsOf: logURL, encoding: .utf8)) ?? "").contains(text) }
            while process.isRunning && !logged("step 2 ") && Date() < deadline { usleep(50_000) }
            try #require(process.isRunning, "earshot train ended before its second step (status \(process.terminationStatus), \(process.terminationReason == .uncaughtSignal ? "killed by a signal" : "exited"); log: \((try? String(contentsOf: logURL, encoding: .utf8)) ?? "none")")
            kill(process.processIdentifier, sig)
            let stopDeadline = Date().addingTimeInterval(60)
            while process.isRunning && Date() < stopDeadline { usleep(50_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                Issue.record("earshot train did not stop within 60 s of signal \(sig)")
            }
            process.waitUntilExit()
            #expect(process.terminationReason == .exit && process.terminationStatus == 0,
                    "signal \(sig): \(process.terminationReason == .uncaughtSignal ? "killed by signal" : "exit status") \(process.terminationStatus)")
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("run/checkpoint.safetensors").path))
            #expect(logged("stopped at step"), "\((try? String(contentsOf: logURL, encoding: .utf8)) ?? "")")
        }
    }

    /// A save killed mid-write (a second Ctrl-C during a checkpoint) leaves its temporary file, as big
    /// as the checkpoint. The next start removes those of dead writers, and keeps a live process's
    /// (another run writing into the same folder) and anything not named like one.
    @Test func startRemovesTemporaryFilesOfKilledSaves() throws {
        try withTemporaryDirectory { dir in
            let (_, _, config) = try Self.fiveWords(in: dir, steps: 1)
            let run = dir.appendingPathComponent("run"), snapshots = run.appendingPathComponent("snapshots")
            try FileManager.default.createDirectory(at: snapshots, withIntermediateDirectories: true)
            let finished = Process()
            finished.executableURL = URL(fileURLWithPath: "/bin/true")
            try finished.run()
            finished.waitUntilExit()
            let dead = finished.processIdentifier
            let stale = [run.appendingPathComponent(".checkpoint.safetensors.tmp-\(dead)-12345"),
                         snapshots.appendingPathComponent(".step-00000001.safetensors.tmp-\(dead)-7")]
            let kept = [run.appendingPathComponent(".last.safetensors.tmp-\(getpid())-99"),
                        run.appendingPathComponent(".notes.tmp-draft"), run.appendingPathComponent("notes.tmp-1-2")]
            for file in stale + kept { try Data("x".utf8).write(to: file) }
            let log = Locked<[String]>([])
            _ = try Trainer(config: config, log: { line in log.withLock { $0.append(line) } })
            for file in stale { #expect(!FileManager.default.fileExists(atPath: file.path), "\(file.lastPathComponent) was left") }
            for file in kept { #expect(FileManager.default.fileExists(atPath: file.path), "\(file.lastPathComponent) was removed") }
            #expect(log.withLock { $0 }.filter { $0.hasPrefix("removed ") }.count == 2, "\(log.withLock { $0 })")
        }
    }
}
