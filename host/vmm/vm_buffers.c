/* See vm_buffers.h. */
#include <stdlib.h>

#include "vm_buffers.h"

void vm_trim_buffers(pv_vm *vm)
{
    if (vm->out.cap > VM_BUFFER_KEEP)
        pv_buf_free(&vm->out);
    if (vm->in_cap > VM_BUFFER_KEEP && vm->in_len == 0) {
        free(vm->in);
        vm->in = NULL;
        vm->in_cap = 0;
    }
}
