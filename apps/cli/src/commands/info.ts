import { type Backend, listKernels } from '@longseq/backend';
import { boolFlag, parseFlags } from '../args';
import { registerSoftmaxKernels } from '@longseq/softmax';
import { BACKEND_NAMES, type BackendName, createBackend, describeAdapter } from '../backends';
import { messageOf } from '../errors';
import type { Io } from '../io';
import { machineInfo } from '../machine';

export interface BackendInfo {
  readonly name: BackendName;
  readonly available: boolean;
  /** Why the backend cannot run here, when it cannot. */
  readonly reason?: string;
  readonly adapter?: Record<string, string>;
  readonly features?: string[];
  readonly limits?: Record<string, number>;
  /** Kernels registered for this backend's kind once it was created. */
  readonly kernels?: string[];
}

/** Creates each backend once, records what it offers, and disposes it. */
export async function probeBackend(name: BackendName): Promise<BackendInfo> {
  let backend: Backend | undefined;
  try {
    backend = await createBackend(name);
    const kind = backend.kind;
    // Op packages register their kernels on first use; register them now so the list is complete.
    registerSoftmaxKernels();
    return {
      name,
      available: true,
      adapter: describeAdapter(backend),
      features: [...backend.features].sort(),
      limits: { ...backend.limits },
      kernels: listKernels()
        .filter((k) => k.backendKind === kind)
        .map((k) => k.kernelName)
        .sort(),
    };
  } catch (err) {
    const reason = messageOf(err);
    return {
      name,
      available: false,
      reason: reason.includes('VK_ICD_FILENAMES') ? reason : reason + vulkanHint(name),
    };
  } finally {
    backend?.dispose();
  }
}

/** On a machine without a GPU, Dawn needs to be pointed at a CPU Vulkan driver. */
function vulkanHint(name: BackendName): string {
  if (name !== 'webgpu' && name !== 'gpujs-webgpu') return '';
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return '';
  return ' (no GPU? try VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json)';
}

export async function infoCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(args, { json: { type: 'boolean' } }, 'info');
  if (p.positionals.length > 0) {
    io.stderr.write(`longseq info: ignoring extra arguments ${p.positionals.join(' ')}\n`);
  }
  // One backend at a time: two Dawn devices at once on SwiftShader only slows both down.
  const backends: BackendInfo[] = [];
  for (const name of BACKEND_NAMES) backends.push(await probeBackend(name));
  const machine = machineInfo(backends.find((b) => b.name === 'webgpu')?.adapter);
  if (boolFlag(p, 'json')) {
    io.stdout.write(`${JSON.stringify({ machine, backends }, null, 2)}\n`);
    return 0;
  }
  const out: string[] = [];
  out.push(`longseq on ${machine.platform}, Node ${machine.node}, ${machine.cpus} CPU cores`);
  for (const b of backends) {
    out.push('');
    if (!b.available) {
      out.push(`${b.name}: unavailable: ${b.reason}`);
      continue;
    }
    out.push(`${b.name}: available`);
    if (b.adapter) {
      out.push(
        `  adapter:  ${Object.entries(b.adapter)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}`,
      );
    }
    out.push(`  features: ${b.features && b.features.length > 0 ? b.features.join(', ') : '(none)'}`);
    for (const [k, v] of Object.entries(b.limits ?? {})) out.push(`  ${k.padEnd(28)} ${v}`);
    out.push(
      `  kernels:  ${b.kernels && b.kernels.length > 0 ? b.kernels.join(', ') : '(none registered yet)'}`,
    );
  }
  io.stdout.write(`${out.join('\n')}\n`);
  return 0;
}
