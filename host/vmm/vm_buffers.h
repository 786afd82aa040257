/* Keeps a VM's host memory at its working size: a transfer of many MiB
 * (write_file, read_file, a batch) leaves the request buffer (vm->out) and
 * the receive buffer (vm->in) at its size, and a test file that did one
 * would hold that memory per VM until the VM goes. */
#ifndef PROVIUM_VM_BUFFERS_H
#define PROVIUM_VM_BUFFERS_H
#include "vm.h"

/* What a VM keeps between requests; push_file's 1 MiB chunks stay below it,
 * so streaming does not allocate per chunk. */
#define VM_BUFFER_KEEP (4u << 20)

/* Gives back either buffer when it is over VM_BUFFER_KEEP and holds nothing
 * still to be used (the receive buffer: no bytes of a next frame). Call it
 * between requests. */
void vm_trim_buffers(pv_vm *vm);
#endif
