import Foundation
import Testing
import Tensors
@testable import Model

/// An independent safetensors writer, written from the format description only: header JSON in
/// arbitrary key order, data in an order different from the keys, no header padding, F32/F16/BF16.
private let pythonWriter = #"""
import json, struct, sys
import numpy as np
out = sys.argv[1]
a = (np.arange(6, dtype=np.float32) * 0.5 - 1).reshape(2, 3)
h = np.array([0.5, -2, 1.25, 65504, 2.0**-24, -0.0, np.inf], dtype=np.float16)
bsrc = np.array([1.0, -3.5, 0.15625, 1e10, 3.14159], dtype=np.float32)
b16 = (bsrc.view(np.uint32) >> 16).astype(np.uint16)           # bfloat16 by truncation
bexp = (b16.astype(np.uint32) << 16).view(np.float32)          # its exact float32 value
chunks = [("h", "F16", [7], h.astype("<f2").tobytes()),
          ("a", "F32", [2, 3], a.astype("<f4").tobytes()),
          ("empty", "F32", [0, 4], b""),
          ("bf", "BF16", [5], b16.astype("<u2").tobytes()),
          ("bf_expected", "F32", [5], bexp.astype("<f4").tobytes())]
entries, data, off = {}, b"", 0
for name, dt, shape, raw in chunks:
    entries[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
    off += len(raw); data += raw
header = {}
for name in reversed(list(entries)): header[name] = entries[name]
header["__metadata__"] = {"format": "test", "note": "caf\u00e9 \"quoted\"\nline"}
hb = json.dumps(header).encode()
open(out, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
"""#

/// An independent reader: parses a file Earshot wrote and prints its tensors, metadata and SHA-256.
private let pythonReader = #"""
import json, struct, sys, hashlib
import numpy as np
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); data = raw[8 + n:]
assert (8 + n) % 8 == 0, "header not padded to 8 bytes"
meta = hdr.pop("__metadata__", {})
covered = 0
tensors = {}
for name, e in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    b, end = e["data_offsets"]
    assert e["dtype"] == "F32" and b == covered
    covered = end
    arr = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"])
    tensors[name] = {"shape": list(arr.shape), "values": [float(v) for v in arr.ravel()]}
assert covered == len(data)
print(json.dumps({"metadata": meta, "tensors": tensors, "sha256": hashlib.sha256(raw).hexdigest()}))
"""#

/// Builds a safetensors file from a raw header string and data bytes (for corrupt cases).
func safetensorsBytes(header: String, data: [UInt8], claimedLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    let n = claimedLength ?? UInt64(h.count)
    return (0..<8).map { UInt8((n >> (8 * UInt64($0))) & 0xff) } + h + data
}

@Suite struct SafeTensorsTests {
    @Test func roundTripPreservesTensorsAndMetadata() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        var rng = SeededRandom(seed: 1)
        let original = SafeTensors(
            tensors: ["w": Tensor(shape: [3, 4, 5], data: rng.floats(60)), "b": Tensor(shape: [7], data: rng.floats(7)),
                      "scalar": Tensor(shape: [], data: [42]), "empty": Tensor(shape: [0], data: [])],
            metadata: ["json": "{\"a\": [1, \"\\u00e9\"]}", "plain": "tab\there"])
        try original.write(path: dir.file("t.safetensors"))
        let loaded = try SafeTensors.read(path: dir.file("t.safetensors"))
        #expect(loaded == original)
    }

    @Test func readsFileWrittenByIndependentPythonWriter() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.file("py.safetensors")
        _ = try Python.run(pythonWriter, [path])
        let st = try SafeTensors.read(path: path)
        #expect(st.metadata == ["format": "test", "note": "café \"quoted\"\nline"])
        #expect(st.tensors["a"] == Tensor(shape: [2, 3], data: [-1, -0.5, 0, 0.5, 1, 1.5]))
        let h = try #require(st.tensors["h"])
        #expect(h.shape == [7])
        #expect(Array(h.data[0..<6]) == [0.5, -2, 1.25, 65504, 0x1p-24, 0])
        #expect(h.data[5].sign == .minus)  // -0 stays negative zero
        #expect(h.data[6] == .infinity)
        let bf = try #require(st.tensors["bf"])
        #expect(bf == st.tensors["bf_expected"].map { Tensor(shape: [5], data: $0.data) })
        #expect(bf.data[0] == 1 && bf.data[1] == -3.5)
        #expect(st.tensors["empty"] == Tensor(shape: [0, 4], data: []))
    }

    @Test func fileWrittenByEarshotReadsInIndependentPythonReader() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.file("sw.safetensors")
        var rng = SeededRandom(seed: 2)
        let st = SafeTensors(tensors: ["x.weight": Tensor(shape: [2, 3], data: rng.floats(6)), "odd": Tensor(shape: [3], data: rng.floats(3))],
                             metadata: ["k": "v \"q\""])
        try st.write(path: path)
        let json = try Python.run(pythonReader, [path])
        struct Out: Decodable { struct T: Decodable { let shape: [Int]; let values: [Double] }
            let metadata: [String: String]; let tensors: [String: T]; let sha256: String }
        let out = try JSONDecoder().decode(Out.self, from: Data(json.utf8))
        #expect(out.metadata == st.metadata)
        #expect(out.tensors.count == 2)
        for (name, t) in st.tensors {
            #expect(out.tensors[name]?.shape == t.shape)
            #expect(out.tensors[name]?.values.map { Float($0) } == t.data)
        }
        #expect(out.sha256 == SHA256.hex(try readFile(path)))
    }

    @Test func sha256MatchesStandardVectors() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // A 56-byte message needs a second padding block: checked against a known digest.
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    // MARK: corrupt files: each is a specific error that names the file

    private func readError(_ bytes: [UInt8], _ name: String) throws -> ModelError? {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let error = modelError { _ = try SafeTensors.read(path: path) }
        if let error {
            #expect(error.file == path)
            #expect(error.description.contains(path))
        }
        return error
    }

    private let goodHeader = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    @Test func fileShorterThanHeaderLengthIsTruncated() throws {
        let e = try readError([1, 2, 3], "tiny.safetensors")
        guard case .truncated = e else { Issue.record("got \(String(describing: e))"); return }
    }

    @Test func headerLengthBeyondFileIsTruncated() throws {
        let e = try readError(safetensorsBytes(header: goodHeader, data: [UInt8](repeating: 0, count: 8), claimedLength: 1 << 40), "long.safetensors")
        guard case .truncated(_, let reason) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(reason.contains("header length"))
    }

    @Test func fileCutInsideTheDataIsTruncated() throws {
        let full = safetensorsBytes(header: goodHeader, data: [UInt8](repeating: 0, count: 8))
        let e = try readError(Array(full.dropLast(3)), "cut.safetensors")
        guard case .truncated(_, let reason) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(reason.contains("'a'"))
    }

    @Test func garbageJSONIsAMalformedHeader() throws {
        let e = try readError(safetensorsBytes(header: "{\"a\": {dtype", data: []), "garbage.safetensors")
        guard case .malformedHeader = e else { Issue.record("got \(String(describing: e))"); return }
        let e2 = try readError(safetensorsBytes(header: "[1, 2]", data: []), "array.safetensors")
        guard case .malformedHeader = e2 else { Issue.record("got \(String(describing: e2))"); return }
    }

    @Test func overlappingOffsetsAreRejected() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        let e = try readError(safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 12)), "overlap.safetensors")
        guard case .badTensor(_, let t, let reason) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(t == "b" && reason.contains("overlap"))
    }

    @Test func holesAndUncoveredBytesAreRejected() throws {
        let hole = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        let e = try readError(safetensorsBytes(header: hole, data: [UInt8](repeating: 0, count: 12)), "hole.safetensors")
        guard case .badTensor(_, "b", let reason) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(reason.contains("hole"))
        let e2 = try readError(safetensorsBytes(header: goodHeader, data: [UInt8](repeating: 0, count: 12)), "tail.safetensors")
        guard case .malformedHeader(_, let reason2) = e2 else { Issue.record("got \(String(describing: e2))"); return }
        #expect(reason2.contains("cover"))
    }

    @Test func shapeThatDisagreesWithByteLengthIsRejected() throws {
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        let e = try readError(safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 8)), "shape.safetensors")
        guard case .badTensor(_, "a", let reason) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(reason.contains("[3]"))
    }

    @Test func unknownDTypeIsNamed() throws {
        let header = #"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#
        let e = try readError(safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 8)), "dtype.safetensors")
        #expect(e == .unsupportedDType(file: e?.file ?? "", tensor: "a", dtype: "Q4"))
    }

    @Test func missingFileIsUnreadable() {
        let e = modelError { _ = try SafeTensors.read(path: "/nonexistent/x.safetensors") }
        guard case .unreadable(let f, _) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(f == "/nonexistent/x.safetensors")
    }
}
