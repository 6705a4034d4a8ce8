import { benchCommand } from './commands/bench';
import { infoCommand } from './commands/info';
import { runCommand } from './commands/run';
import { verifyCommand } from './commands/verify';
import { UsageError, exitCodeFor, messageOf } from './errors';
import { type Io, processIo } from './io';

export const USAGE = `longseq: sequence-model kernels on WebGPU and gpu.js

Usage:
  longseq info [--json]
      Backends available here, adapter, features and limits.
  longseq bench softmax [--backend NAME|all] [--rows R] [--lengths 256,1024,4096]
                        [--repeats K] [--dispatches D] [--warmup W] [--timer auto|wall]
                        [--json] [--svg out.svg]
      Times naive, safe and online softmax (fused and multipass on WebGPU) against a copy
      kernel of the same tensor. Prints median time, GB/s and % of copy bandwidth.
  longseq bench mamba-decode [--backend NAME] [--d-model 768] [--layers 24] [--vocab 50280]
                        [--d-state 16] [--batch 1] [--prompt 64] [--tokens 16] [--repeats 3]
                        [--warmup 1] [--path fused|composed|both] [--lanes 0|8..256]
                        [--seed S] [--json]
      A Mamba-130m-shaped model with seeded random weights: prefill tokens/s over the prompt
      and greedy decode tokens/s through the O(1) step (WebGPU fused and composed paths).
  longseq bench paged-kv [--requests R] [--rate PER_STEP] [--blocks B] [--block-size S]
                         [--max-len L] [--n N | --beam W] [--shared-prefix T]
                         [--preemption recompute|swap] [--seed S] [--json] [--svg out.svg]
      Serving simulation (CPU): a synthetic chat trace replayed under a fixed KV budget by
      contiguous reservation and by the paged cache. Prints KV waste, concurrent sequences,
      tokens per step and memory saved by sharing; --svg writes memory and concurrency plots.
  longseq bench paged-attention [--backend NAME] [--seqs S] [--context L] [--heads H]
                                [--kv-heads K] [--head-dim D] [--block-size B] [--partition P]
                                [--repeats K] [--warmup W] [--timer auto|wall] [--no-contiguous]
                                [--json]
      Paged decode attention: time, GB/s of the K/V read, % of a copy of the same bytes,
      and flash-attention's contiguous decode on the same data.
  longseq bench scan [--backend NAME|all] [--batch B] [--d D] [--lengths 256,1024,4096]
                     [--n N] [--algorithms sequential,sequential-thread,parallel,parallel-tree]
                     [--repeats K] [--warmup W] [--dispatches D] [--timer auto|wall]
                     [--exp auto|fast|accurate] [--json] [--svg out.svg]
      Mamba's selective scan (B, C [batch, n, L], z, D, dt bias + softplus), sequential and
      parallel (-thread, -tree: without subgroups), against a copy of the same bytes:
      GB/s counting each input read once and y written once, % of copy, and a check of a
      few channels against the float64 reference.
  longseq bench attention [--backend NAME|all] [--batch-heads BH] [--n 1024,2048,4096] [--d 64]
                          [--causal both|true|false] [--algorithm flash,naive] [--backward]
                          [--repeats K] [--warmup W] [--tile br,bc,tr,tc] [--timer auto|wall]
                          [--variant auto,subgroup-matrix] [--fresh-device] [--json] [--svg out.svg]
      FlashAttention against naive attention (scores materialized): time, TFLOP/s (4 N^2 d
      per head forward, half when causal; backward 2.5x), speedup over naive, and a check of
      the last rows against the float64 reference (backward: dq, dk, dv of head 0 up to
      N = 512). --variant subgroup-matrix times the opt-in forward on matrix units (needs
      LONGSEQ_WEBGPU_SUBGROUP_MATRIX=1). --svg plots time vs N. --fresh-device measures each
      case on a new device, so one size's large buffers cannot slow the next.
  longseq bench attention --memory [--backend NAME] [--n START] [--max-n MAX] [--d 64]
      Peak bytes beyond inputs and outputs of flash and naive as N doubles from START, until
      each no longer fits the device (flash grows as N, naive as N^2).
  longseq bench ssm-conv [--backend NAME|all] [--channels H] [--lengths 256,1024,4096]
                         [--states N] [--fft auto|workgroup|global] [--repeats K] [--warmup W]
                         [--warmup-ms 500] [--timer auto|wall] [--json] [--svg out.svg]
      Diagonal SSM (S4D-Lin, N complex states, one dt per channel) on the GPU: the FFT causal
      convolution (with and without computing K by the Vandermonde kernel) against the direct
      recurrence, the crossover L, a check against the float64 recurrence; --svg plots time
      vs L with an L log L guide. PyTorch reference: apps/cli/reference/torch_ssm_conv.py.
  longseq bench vim [--backend NAME] [--batch 1,64] [--img-size 224] [--patch 16] [--embed 192]
                    [--depth 24] [--d-state 16] [--scan bi|cross4] [--layout channels,tokens]
                    [--algorithm auto,sequential,parallel] [--repeats 5] [--warmup 2]
                    [--seed S] [--torch torch_vim.json] [--json]
      Vision Mamba of Vim-tiny's shape with seeded random weights: images/s of classify at
      each batch (logits read back), after a check of a small Vim against the float64
      reference; --torch puts apps/cli/reference/torch_vim.py's numbers beside them.
  longseq bench jamba [--backend NAME] [--hidden 1024] [--layers 8] [--experts 16] [--top-k 2]
                      [--heads 8] [--kv-heads 2] [--intermediate 3584] [--vocab 65536]
                      [--attn-period 8] [--attn-offset 4] [--prefill 4096] [--prompt 64]
                      [--tokens 32] [--batches 1,16] [--repeats 3] [--prefill-repeats 3]
                      [--warmup 1] [--seed S] [--path auto|composed] [--torch torch_jamba.json]
                      [--json]
      Jamba of issue 9's shape with seeded random weights: prefill tokens/s over one prompt
      and greedy decode tokens/s through the hybrid cache at each batch, after checking that
      cached decoding equals recomputation, with WebGPU's dispatches and submits per decode
      step; --torch puts reference/torch_jamba.py's beside them.
  longseq bench jamba-memory [--contexts 1024,...,262144] [--block-size 16] [--layers 32]
                             [--hidden 4096] [--kv-heads 8] [--head-dim 128] [--attn-period 8]
                             [--attn-offset 4] [--d-state 16] [--d-conv 4] [--expand 2]
                             [--dtype-bytes 2] [--json] [--svg out.svg]
      Cache bytes of one sequence, Jamba (attention 1 in 8, fixed Mamba states) against a
      Transformer of the same depth and width, from the paged-kv block accounting (CPU only);
      defaults: Jamba v0.1 against Mixtral-8x7B's attention in bf16. --svg plots bytes vs context.
  longseq verify <golden file or folder> [--backend NAME] [--json]
      Checks a golden file (e.g. golden/attention.json) or a checkpoint folder with its
      expected.json (golden/mamba-tiny, golden/vim-tiny) on a backend by the test rule.
      Exits 1 if any case fails.
  longseq run <checkpoint-dir> --ids 3,17,42 [--generate N] [--backend NAME] [--json]
              [--all-logits] [--temperature T] [--top-k K] [--top-p P] [--seed S]
      Loads a Hugging Face checkpoint folder (config.json's architecture picks the model:
      MambaForCausalLM), prints the last position's logits (every position with
      --all-logits) and N generated ids (greedy unless --temperature is given).
      --json prints {"logits": [[...per position...]], "generated": [...]}.
  longseq run <vim-dir> --image file.png | --random [--seed S] [--top K] [--mean M[,M,M]]
              [--std S[,S,S]] [--backend NAME] [--json]
      An image classifier folder (VisionMamba): classifies a PNG (8-bit gray, gray+alpha,
      RGB or RGBA; resized to the model's input) or a seeded random image and prints the
      top classes. --json prints {"logits": [...], "top": [...]}.

Backends: webgpu, gpujs-webgpu, gpujs-webasm, gpujs-cpu (all = every one of them).
Exit codes: 0 ok, 1 a check or run failed, 2 bad usage or unavailable backend.
`;

type Command = (args: string[], io: Io) => Promise<number>;

/** The command table: adding a command is one line here and one file in ./commands. */
const COMMANDS: Record<string, Command> = {
  info: infoCommand,
  bench: benchCommand,
  verify: verifyCommand,
  run: runCommand,
};

/** Runs the CLI in-process and returns its exit code (the binary passes it to process.exit). */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    (name === undefined ? io.stderr : io.stdout).write(USAGE);
    return name === undefined ? 2 : 0;
  }
  try {
    const command = COMMANDS[name];
    if (!command) {
      throw new UsageError(
        `unknown command '${name}'; commands: ${Object.keys(COMMANDS).join(', ')}. Run 'longseq help'.`,
      );
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(USAGE);
      return 0;
    }
    return await command(rest, io);
  } catch (err) {
    io.stderr.write(`longseq ${name}: ${messageOf(err)}\n`);
    if (exitCodeFor(err) === 1 && err instanceof Error && err.stack && process.env.LONGSEQ_DEBUG) {
      io.stderr.write(`${err.stack}\n`);
    }
    return exitCodeFor(err);
  }
}
