#!/usr/bin/env python3
"""Synthesises Earshot's multi-voice English training corpus with Debian's TTS engines (espeak-ng, flite,
festival) and sox augmentation, with train / valid / test split by voice AND by text.

  corpus/synthesize.py --out DIR --hours 100 [--eval-hours 1] [--accented-hours H] [--small] [--jobs N] [--seed S]

Writes DIR/{train,valid,test}.tsv (`relative/audio/path<TAB>text`), DIR/voices.tsv (each utterance's
engine, voice, parameters, text source and augmentation), DIR/summary.json and DIR/summary.txt.
--accented-hours adds a training-only split, DIR/accented.tsv: training texts read with an accent by
festival's Italian, Czech, Finnish and Indian voices (accented.py), and DIR/train+accented.tsv, both
training sets in one manifest. It leaves the other splits exactly as they were.
Resumable: utterances already recorded in DIR/meta/*.jsonl are skipped; audio is written to a
temporary name and renamed, so an interrupted run never leaves a half-written file under its final name.
Deterministic given --seed, whatever --jobs: a split's manifest is the shortest run of utterances, in
plan order, that reaches its goal; utterances that parallel workers finished past it stay in
DIR/meta but are left out of the manifests and the summary.
"""

import argparse
import concurrent.futures
import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
import time
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import augment  # noqa: E402
import texts  # noqa: E402
import voices  # noqa: E402

SPLITS = ["test", "valid", "train"]  # the small eval splits first, so they are usable early
EXTRA_SPLITS = ["accented"]  # training-only supplements, made after the others when asked for
POOL_OF = {"accented": "train"}  # the split whose texts and babble bed a supplement uses
SOURCE_SHARE = {"lm": 0.40, "fortunes": 0.27, "docs": 0.03, "numbers": 0.20, "commands": 0.10}
SMALL_COUNTS = {"test": 10, "valid": 10, "train": 40, "accented": 10}
MIN_SECONDS, MAX_SECONDS = 1.0, 15.0
TEXT_VERSION = 1


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(os.path.expanduser("~"), ".cache", "earshot", "corpus"),
                   help="output folder (default ~/.cache/earshot/corpus)")
    p.add_argument("--hours", type=float, default=100.0, help="hours of TRAINING audio (default 100)")
    p.add_argument("--eval-hours", type=float, default=1.0, help="hours of valid and of test audio (default 1)")
    p.add_argument("--accented-hours", type=float, default=0.0,
                   help="hours of the accented training supplement (default 0: none; with --small, 10 utterances)")
    p.add_argument("--small", action="store_true",
                   help="smoke test: 60 utterances (40 train, 10 valid, 10 test), small text pools")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--seed", type=int, default=1, help="random seed: same seed, same corpus")
    p.add_argument("--format", choices=["flac", "wav"], default="flac", help="audio format (default flac)")
    p.add_argument("--report", action="store_true",
                   help="print the summary of what DIR holds so far (safe while a run is going) and exit")
    return p.parse_args(argv)


# -- text -----------------------------------------------------------------------------------------------

def prepare_text(out, seed, small):
    """Text pools per source and split, cached in out/text/pools.json (made once, then reused)."""
    path = os.path.join(out, "text", "pools.json")
    key = {"seed": seed, "small": small, "version": TEXT_VERSION}
    if os.path.exists(path):
        with open(path) as fh:
            cached = json.load(fh)
        if cached.get("key") == key:
            return cached["pools"]
        raise SystemExit(f"{path} was made with {cached.get('key')}, not {key}: use another --out "
                         "or delete that folder")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pools = texts.build_pools(seed, small, log)
    for split in SPLITS:
        counts = ", ".join(f"{s} {len(pools[s][split])}" for s in pools)
        log(f"text: {split} pool: {counts}")
    atomic_write(path, json.dumps({"key": key, "pools": pools}))
    for split in SPLITS:  # plain-text copies, for reading
        atomic_write(os.path.join(out, "text", f"{split}.txt"),
                     "".join(f"{source}\t{s}\n" for source in pools for s in pools[source][split]))
    return pools


def atomic_write(path, content):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(content)
    os.replace(tmp, path)


# -- plan -----------------------------------------------------------------------------------------------

def plans(split, pools, seed, ext):
    """The endless, deterministic sequence of utterance plans of a split; plan i depends only on
    (seed, split, i) and the pools."""
    split_voices = voices.voices_for(split)
    engines = [e for e in ("espeak", "flite", "festival", "accented")
               if split_voices.get(e) and voices.ENGINE_SHARE[split].get(e, 0) > 0]
    engine_weights = [voices.ENGINE_SHARE[split][e] for e in engines]
    text_split = POOL_OF.get(split, split)
    sources = [s for s in SOURCE_SHARE if pools[s][text_split]]
    source_weights = [SOURCE_SHARE[s] for s in sources]
    orders = {}
    for s in sources:
        order = list(pools[s][text_split])
        random.Random(f"{seed}|{split}|{s}").shuffle(order)
        orders[s] = order
    cursor = {s: 0 for s in sources}
    i = 0
    while True:
        rng = random.Random(f"{seed}|{split}|{i}")
        source = rng.choices(sources, source_weights)[0]
        text = orders[source][cursor[source] % len(orders[source])]
        cursor[source] += 1
        engine = rng.choices(engines, engine_weights)[0]
        voice = rng.choice(split_voices[engine])
        yield {"id": f"{split}-{i:06d}", "index": i, "split": split, "source": source, "text": text,
               "engine": engine, "voice": voice, "params": voices.choose_params(engine, rng),
               "aug": augment.choose(rng), "path": f"{split}/{i // 1000:03d}/{split}-{i:06d}.{ext}"}
        i += 1


# -- work -----------------------------------------------------------------------------------------------

def wav_seconds(path):
    with wave.open(path, "rb") as w:
        return w.getnframes() / float(w.getframerate())


def work(plan, out, beds, audio_format):
    """Synthesises and augments one utterance. Returns its record (with 'rejected' when it could not
    be made or fell outside 1-15 s)."""
    work_dir = os.path.join(out, "tmp", f"w{os.getpid()}")
    os.makedirs(work_dir, exist_ok=True)
    record = dict(plan)
    tts_wav = os.path.join(work_dir, "tts.wav")
    t0 = time.monotonic()
    try:
        voices.synthesize(plan["engine"], plan["voice"], plan["params"], plan["text"], tts_wav)
        tts_seconds = wav_seconds(tts_wav)
    except (subprocess.CalledProcessError, OSError, wave.Error, EOFError) as err:
        detail = getattr(err, "stderr", b"") or b""
        record["rejected"] = f"tts failed: {err} {detail[-200:].decode(errors='replace')}"
        return record
    t1 = time.monotonic()
    record["tts_wall"] = round(t1 - t0, 4)
    record["tts_seconds"] = round(tts_seconds, 3)
    if tts_seconds < 0.3:
        record["rejected"] = f"tts produced {tts_seconds:.2f} s"
        return record
    final = os.path.join(out, plan["path"])
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
        length = augment.render(tts_wav, final, plan["aug"], beds, POOL_OF.get(plan["split"], plan["split"]),
                               work_dir, audio_format)
    except (subprocess.CalledProcessError, OSError) as err:
        record["rejected"] = f"sox failed: {err}"
        return record
    record["wall"] = round(time.monotonic() - t0, 4)
    record["duration"] = round(length, 3)
    if not MIN_SECONDS <= length <= MAX_SECONDS:
        os.remove(final)
        record["rejected"] = f"duration {length:.2f} s outside {MIN_SECONDS}-{MAX_SECONDS} s"
    return record


def babble_sources(out, pools, seed, small):
    """Clean TTS utterances of each split's own voices and texts, for that split's babble bed: babble
    never carries a held-out voice into training."""
    result = {}
    count = 6 if small else 40
    for split in SPLITS:
        wavs = []
        split_voices = voices.voices_for(split)
        rng = random.Random(f"{seed}|babble|{split}")
        sentences = [s for src in ("lm", "fortunes") for s in pools[src][split]]
        for k in range(count):
            path = os.path.join(out, "noise", "src", f"{split}-{k:03d}.wav")
            engine = "espeak" if k % 3 else "flite"
            voice = rng.choice(split_voices[engine])
            params = voices.choose_params(engine, rng)
            text = rng.choice(sentences)
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                voices.synthesize(engine, voice, params, text, path + ".tts.wav")
                # One rate for all, so that sox can concatenate them into talkers.
                subprocess.run(augment.SOX + [path + ".tts.wav", "-r", "16000", "-c", "1", "-b", "16",
                                              path + ".tmp.wav"], check=True)
                os.remove(path + ".tts.wav")
                os.replace(path + ".tmp.wav", path)
            wavs.append(path)
        result[split] = wavs
    return result


# -- records, manifests, summary ------------------------------------------------------------------------

def load_records(out, split):
    records = {}
    path = os.path.join(out, "meta", f"{split}.jsonl")
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interruption: that utterance is redone
                if "rejected" in rec or os.path.exists(os.path.join(out, rec["path"])):
                    records[rec["index"]] = rec
    return records


def load_goals(out):
    """The goals DIR's splits were made to (meta/goals.json): {split: {"seconds": s} or {"count": n}}."""
    try:
        with open(os.path.join(out, "meta", "goals.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}  # a corpus from before goals were saved: its manifests keep every record


def merge_goals(args, saved):
    """Each split's goal: the largest ever asked of DIR, so that a later run with smaller or default sizes
    (adding the accented supplement to a 200-hour corpus with the README's command) never shortens a
    manifest; splits this run does not make keep their saved goal."""
    goals = dict(saved)
    for split in SPLITS + (["accented"] if args.accented_hours > 0 else []):
        if args.small:
            key, value = "count", SMALL_COUNTS[split]
        else:
            key, value = "seconds", {"train": args.hours, "accented": args.accented_hours}.get(split, args.eval_hours) * 3600.0
        goals[split] = {key: max(value, saved.get(split, {}).get(key, 0))}
    return goals


def goal_rules(goals):
    """enough(total seconds, count) per split: when the split has reached its goal."""
    def rule(goal):
        if "count" in goal:
            return lambda total, count: count >= goal["count"]
        return lambda total, count: total >= goal["seconds"]
    return {split: rule(goal) for split, goal in goals.items()}


def kept(records, enough=None):
    """A split's records in plan order, up to the first that reaches the goal (`enough`), and never past
    a missing one: what one worker would have made. Parallel workers finish a few past the goal, in an
    order that depends on timing; leaving those out makes the manifest the same whatever --jobs was.
    Without a rule (a split this run does not make) every record up to the first gap is kept."""
    out, total, count, i = [], 0.0, 0, 0
    while i in records and not (enough and enough(total, count)):
        rec = records[i]
        out.append(rec)
        if "rejected" not in rec:
            total += rec["duration"]
            count += 1
        i += 1
    return out


def manifest_records(out, manifest):
    """The records of the utterances DIR/MANIFEST.tsv lists, in its order: for tools that need more than
    the manifest's path and text (bench/make-test-sets.sh, bench/corpus-breakdown.py), so that they see
    exactly what the manifest holds. MANIFEST may be a split or any manifest of the corpus's paths
    (test-subset, valid-clean, train+accented): each path's first folder names its split."""
    with open(os.path.join(out, f"{manifest}.tsv"), encoding="utf-8") as fh:
        paths = [line.split("\t", 1)[0] for line in fh if line.strip()]
    by_path = {}
    for split in sorted({p.split("/", 1)[0] for p in paths} & set(SPLITS + EXTRA_SPLITS)):
        by_path.update((r["path"], r) for r in load_records(out, split).values() if "rejected" not in r)
    # (An utterance whose audio has since been deleted has no record: left out, like its audio.)
    return [by_path[p] for p in paths if p in by_path]


def write_outputs(out, all_records, rules):
    lines = {"voices": ["path\tsplit\tengine\tvoice\tparams\tsource\taugmentation\tduration\taug_json"]}
    manifests = {}
    for split in SPLITS + [x for x in EXTRA_SPLITS if all_records.get(x)]:
        manifest = []
        for rec in kept(all_records.get(split, {}), rules.get(split)):
            if "rejected" in rec:
                continue
            manifest.append(f"{rec['path']}\t{rec['text']}")
            params = ",".join(f"{k}={v}" for k, v in rec["params"].items())
            lines["voices"].append("\t".join([rec["path"], split, rec["engine"], rec["voice"], params,
                                              rec["source"], augment.describe(rec["aug"]),
                                              f"{rec['duration']:.3f}", json.dumps(rec["aug"])]))
        manifests[split] = manifest
        atomic_write(os.path.join(out, f"{split}.tsv"), "".join(m + "\n" for m in manifest))
    if "accented" in manifests:
        atomic_write(os.path.join(out, "train+accented.tsv"),
                     "".join(m + "\n" for m in manifests["train"] + manifests["accented"]))
    atomic_write(os.path.join(out, "voices.tsv"), "".join(v + "\n" for v in lines["voices"]))


def summarise(all_records, wall_seconds, rules):
    """Hours, voices and speeds of what the manifests hold (`rules` as write_outputs takes them)."""
    summary = {"splits": {}, "engines": {}, "wall_seconds_this_run": round(wall_seconds, 1)}
    for split in SPLITS + [x for x in EXTRA_SPLITS if all_records.get(x)]:
        recs = kept(all_records.get(split, {}), rules.get(split))
        ok = [r for r in recs if "rejected" not in r]
        by = {}
        for field in ("engine", "source"):
            agg = {}
            for r in ok:
                agg[r[field]] = agg.get(r[field], 0.0) + r["duration"] / 3600.0
            by[field] = {k: round(v, 3) for k, v in sorted(agg.items())}
        aug = {}
        for r in ok:
            tag = "clean" if r["aug"].get("clean") else ("noisy" if "noise" in r["aug"] else "effects only")
            aug[tag] = aug.get(tag, 0.0) + r["duration"] / 3600.0
        summary["splits"][split] = {
            "utterances": len(ok), "rejected": len(recs) - len(ok),
            "hours": round(sum(r["duration"] for r in ok) / 3600.0, 3),
            "voices": len({(r["engine"], r["voice"]) for r in ok}),
            "hours_by_engine": by["engine"], "hours_by_source": by["source"],
            "hours_by_augmentation": {k: round(v, 3) for k, v in sorted(aug.items())}}
        for r in ok:
            e = summary["engines"].setdefault(r["engine"], {"tts_audio_s": 0.0, "tts_wall_s": 0.0,
                                                            "out_audio_s": 0.0, "pipeline_wall_s": 0.0})
            e["tts_audio_s"] += r["tts_seconds"]
            e["tts_wall_s"] += r["tts_wall"]
            e["out_audio_s"] += r["duration"]
            e["pipeline_wall_s"] += r["wall"]
    for e in summary["engines"].values():
        e["tts_x_realtime"] = round(e["tts_audio_s"] / max(e["tts_wall_s"], 1e-9), 1)
        e["pipeline_x_realtime"] = round(e["out_audio_s"] / max(e["pipeline_wall_s"], 1e-9), 1)
        for k in ("tts_audio_s", "tts_wall_s", "out_audio_s", "pipeline_wall_s"):
            e[k] = round(e[k], 1)
    return summary


def summary_text(summary):
    rows = []
    for split, s in summary["splits"].items():
        rows.append(f"{split}: {s['hours']:.3f} h, {s['utterances']} utterances ({s['rejected']} rejected), "
                    f"{s['voices']} voices")
        rows.append("  by engine: " + ", ".join(f"{k} {v:.3f} h" for k, v in s["hours_by_engine"].items()))
        rows.append("  by source: " + ", ".join(f"{k} {v:.3f} h" for k, v in s["hours_by_source"].items()))
        rows.append("  by augmentation: " + ", ".join(f"{k} {v:.3f} h" for k, v in s["hours_by_augmentation"].items()))
    for engine, e in sorted(summary["engines"].items()):
        rows.append(f"speed {engine}: TTS {e['tts_x_realtime']}x real time, "
                    f"TTS+augmentation {e['pipeline_x_realtime']}x real time")
    return "\n".join(rows) + "\n"


# -- main -----------------------------------------------------------------------------------------------

def run_split(split, args, pools, beds, records, meta_fh, all_records, started, goals):
    ext = args.format
    rules = goal_rules(goals)
    enough = rules[split]
    target = goals[split].get("seconds")
    goal = f"{target / 3600.0:.2f} h" if target is not None else f"{goals[split]['count']} utterances"
    # Progress counts the unbroken run of utterances from the first (what the manifest can hold): the
    # split is done when that run reaches the goal, whatever finished beyond a gap.
    frontier, total, count = 0, 0.0, 0

    def advance():
        nonlocal frontier, total, count
        while frontier in records and not enough(total, count):
            if "rejected" not in records[frontier]:
                total += records[frontier]["duration"]
                count += 1
            frontier += 1

    advance()
    log(f"{split}: {count} utterances ({total / 3600.0:.3f} h) already done; goal {goal}")
    new_audio, last_report, since_manifest = 0.0, time.monotonic(), 0
    split_started = time.monotonic()

    def accept(rec):
        nonlocal new_audio, last_report, since_manifest
        meta_fh.write(json.dumps(rec) + "\n")
        meta_fh.flush()
        records[rec["index"]] = rec
        advance()
        if "rejected" in rec:
            log(f"{split}: {rec['id']} rejected: {rec['rejected']}")
            return
        new_audio += rec["duration"]
        since_manifest += 1
        now = time.monotonic()
        if now - last_report > 30 or args.small:
            rate = new_audio / max(now - split_started, 1e-9)
            eta = "" if target is None else f", about {max(target - total, 0) / max(rate, 1e-9) / 3600.0:.1f} h to go"
            log(f"{split}: {count} utterances, {total / 3600.0:.3f} h of {goal}; "
                f"{rate:.1f}x real time ({rate:.1f} audio hours per wall hour){eta}")
            last_report = now
        if since_manifest >= 500:
            write_outputs(args.out, all_records, rules)
            since_manifest = 0

    plan_iter = plans(split, pools, args.seed, ext)
    # The evaluation splits are small and made first: one worker, so they are usable early and in order.
    jobs = 1 if split in ("valid", "test") else args.jobs
    if jobs <= 1:
        for plan in plan_iter:
            if enough(total, count):
                break
            if plan["index"] in records:
                continue
            accept(work(plan, args.out, beds, args.format))
    else:
        with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
            pending = set()
            for plan in plan_iter:
                if enough(total, count):
                    break
                if plan["index"] in records:
                    continue
                pending.add(pool.submit(work, plan, args.out, beds, args.format))
                while len(pending) >= 2 * jobs or (pending and enough(total, count)):
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for f in done:
                        accept(f.result())
            for f in concurrent.futures.as_completed(pending):
                accept(f.result())
    log(f"{split}: done, {count} utterances, {total / 3600.0:.3f} h")


def main(argv=None):
    args = parse_args(argv)
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    splits = SPLITS + (["accented"] if args.accented_hours > 0 else [])
    if args.report:
        # What the manifests hold (or will, for a split still being made): the saved goals' rule.
        records = {split: load_records(args.out, split) for split in SPLITS + EXTRA_SPLITS}
        print(summary_text(summarise(records, 0.0, goal_rules(load_goals(args.out)))), end="")
        return
    for tool in ("espeak-ng", "flite", "festival", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: run scripts/setup.sh")
    voices.check_disjoint()
    voices.check_installed(accented_voices=args.accented_hours > 0)
    lock = open(os.path.join(args.out, ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another synthesize.py is writing {args.out}")
    started = time.monotonic()
    log(f"corpus: writing {args.out} (seed {args.seed}, {'small' if args.small else f'{args.hours} h train'}, "
        f"{args.jobs} job(s))")
    pools = prepare_text(args.out, args.seed, args.small)
    shutil.rmtree(os.path.join(args.out, "tmp"), ignore_errors=True)
    beds = augment.make_noise_beds(os.path.join(args.out, "noise"),
                                   babble_sources(args.out, pools, args.seed, args.small),
                                   seconds=20.0 if args.small else augment.NOISE_BED_SECONDS)
    os.makedirs(os.path.join(args.out, "meta"), exist_ok=True)
    all_records = {split: load_records(args.out, split) for split in SPLITS + EXTRA_SPLITS}
    goals = merge_goals(args, load_goals(args.out))
    atomic_write(os.path.join(args.out, "meta", "goals.json"), json.dumps(goals, indent=2, sort_keys=True) + "\n")
    rules = goal_rules(goals)
    for split in splits:
        meta_path = os.path.join(args.out, "meta", f"{split}.jsonl")
        if os.path.exists(meta_path) and os.path.getsize(meta_path):
            with open(meta_path, "rb+") as fh:  # an interrupted run can leave a line without its newline
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
        with open(meta_path, "a") as meta_fh:
            run_split(split, args, pools, beds, all_records[split], meta_fh, all_records, started, goals)
        write_outputs(args.out, all_records, rules)
    summary = summarise(all_records, time.monotonic() - started, rules)
    atomic_write(os.path.join(args.out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    text = summary_text(summary)
    atomic_write(os.path.join(args.out, "summary.txt"), text)
    shutil.rmtree(os.path.join(args.out, "tmp"), ignore_errors=True)
    print(text, end="")
    log(f"corpus: finished in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
