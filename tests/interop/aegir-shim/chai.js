// aegir/chai as aegir sets it up: chai with its promise, bytes, string, subset and
// parentheses plugins, exporting chai, expect and assert.
import chai from 'chai'
import chaiAsPromised from 'chai-as-promised'
import chaiBites from 'chai-bites'
import chaiParentheses from 'chai-parentheses'
import chaiString from 'chai-string'
import chaiSubset from 'chai-subset'

chai.use(chaiAsPromised)
chai.use(chaiParentheses)
chai.use(chaiSubset)
chai.use(chaiString)
chai.use(chaiBites)

export const expect = chai.expect
export const assert = chai.assert
export { chai }
