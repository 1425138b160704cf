"""One-off: give the checkpoints of seed 0's finished B and C digits jobs (written before 017bfb5, when the
evaluation callback kept no state) the callback state a current checkpoint carries: the periodic scores
taken before the checkpoint (steps < the run's length) and their time, both from the job's summary.json."""
import json, os, sys, torch
root = "/work/digits/multirun/study_digits/seed0/single"
for j in range(16, 48):
    d = f"{root}/{j}"
    s = json.load(open(f"{d}/summary.json"))
    assert s["status"] == "completed" and s["optim"] in ("B", "C") and s["steps"] == 2000, (j, s["status"], s["steps"])
    path = f"{d}/checkpoints/last.ckpt"
    c = torch.load(path, map_location="cpu", weights_only=True)
    assert c["global_step"] == 2000 * (s["n_dis"] + 1)
    if "EvaluationCallback" in c["callbacks"]:
        print(j, "already has it"); continue
    c["callbacks"]["EvaluationCallback"] = {
        "history": [h for h in s["metrics_history"] if h["step"] < s["steps"]],
        "periodic_seconds": float(s["eval_protocol"]["periodic_eval_sec"])}
    torch.save(c, path + ".tmp"); os.replace(path + ".tmp", path)
    print(j, s["optim"], s["regularizer"], len(c["callbacks"]["EvaluationCallback"]["history"]), "scores injected")
